-- Owner: classifier. A customer's timeline is one function of their events, the borders and
-- today (shared/timeline.py): to derive it again from any date (a late event's correction),
-- the classifier must know which borders were in force on that date. `effective_on` is the day
-- a version took effect: the day the classifier's clock first applied it (a tenant with nobody
-- classified yet has it from the beginning, 0001-01-01); null until then.
ALTER TABLE tenant_rules ADD COLUMN effective_on date;

-- Versions applied before this column existed: the day they were stored, in the tenant's zone.
UPDATE tenant_rules r SET effective_on = (r.created_at AT TIME ZONE t.time_zone)::date
FROM tenants t
WHERE t.tenant_id = r.tenant_id AND r.version <= t.applied_rules_version;
