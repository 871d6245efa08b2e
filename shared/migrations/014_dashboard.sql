-- The dashboard (issue 15).
-- Owned by reports: the tenant's dashboard settings; for now the target of the monthly
-- 初回→よちよち rate, drawn as a line on the transition chart (CPM.md: 50 %, the tenant may
-- change it).
CREATE TABLE dashboard_settings (
    tenant_id        text PRIMARY KEY,
    fledgling_target numeric(5, 4) NOT NULL CHECK (fledgling_target > 0 AND fledgling_target <= 1),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Owned by the notifier: what staff report when they mark a follow-up done (`outcome` stays
-- the system's word for how the task closed: done, comeback, superseded, ...).
ALTER TABLE followups
    ADD COLUMN staff_outcome text,   -- reached | no_answer | visited | mailed | declined | other
    ADD COLUMN staff_note    text;
