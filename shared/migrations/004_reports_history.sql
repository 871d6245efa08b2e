-- Owner: the reports service (services/reports/store/); no other service reads these.
-- Reports (issue 6): history, transitions, the owner's questions, RFM, DM response tracking.
-- Design and reasons: services/reports/domain/timeline.py (timeline and monthly moves) and
-- services/reports/domain/ (rfm, ltv, dm). Invariants kept by services/reports, in the consumer's
-- transaction:
--   portfolio_monthly_deltas = portfolio_daily_deltas summed per calendar month;
--   report_timeline          = every applied customer state, superseded ones removed;
--   report_moves             = the monthly cells computed from report_timeline
--                              (services.reports.history.month_moves), and
--   the portfolio as of D    = the customers whose timeline entry in force on D has a segment,
-- so history, transitions and the questions are read from small tables and bounded ranges.

-- The day of the change an undo returns to, so an undone lapse's replacement is never dated
-- before it (the timeline stays in date order). Null for rows written before: no clamp.
ALTER TABLE report_customers ADD COLUMN prev_effective_on date;

-- Per month (first day, tenant calendar): the daily deltas rolled up, so a history of years or
-- an as-of in the past sums months, not days.
CREATE TABLE portfolio_monthly_deltas (
    tenant_id text NOT NULL,
    scope     text NOT NULL,
    month     date NOT NULL,
    segment   text NOT NULL,
    customers bigint NOT NULL DEFAULT 0,
    sales     numeric(20, 2) NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, scope, month, segment)
);
INSERT INTO portfolio_monthly_deltas (tenant_id, scope, month, segment, customers, sales)
SELECT tenant_id, scope, date_trunc('month', day)::date, segment, sum(customers), sum(sales)
FROM portfolio_daily_deltas
GROUP BY 1, 2, 3, 4;

-- Each customer's segment timeline: one row per applied customer state. The entry in force on
-- a day D is the one with the highest seq among those effective on or before D. Timelines are
-- kept in date order (a higher seq is never dated earlier), so the key can serve "entries since
-- a day" and "the entry in force before it" for one customer as index ranges.
CREATE TABLE report_timeline (
    tenant_id         text NOT NULL,
    scope             text NOT NULL,
    customer_id       text NOT NULL,
    seq               bigint NOT NULL,
    effective_on      date NOT NULL,
    segment           text,                    -- null: in no segment (all purchases voided)
    purchase_count    integer NOT NULL,
    total_amount      numeric(16, 2) NOT NULL,
    first_purchase_on date,
    last_purchase_on  date,
    PRIMARY KEY (tenant_id, scope, customer_id, effective_on, seq)
);
-- Bounded reads by date range (the questions: dormant customers, last quarter's newcomers).
CREATE INDEX report_timeline_day ON report_timeline (tenant_id, scope, effective_on);

-- Monthly moves: per month, the customers who had at least one timeline entry in it, counted
-- by (segment at the month's eve, segment at its end); 'new' = in no segment at the eve, 'none' =
-- in no segment at the end. span 1: eve = the previous month's last day; span 6: the last day
-- six months earlier (the six-month view; only cells whose segment changed). Customers without
-- an entry stayed where they were: those cells come from the portfolio history.
CREATE TABLE report_moves (
    tenant_id    text NOT NULL,
    scope        text NOT NULL,
    span         smallint NOT NULL,
    month        date NOT NULL,
    from_segment text NOT NULL,
    to_segment   text NOT NULL,
    customers    bigint NOT NULL DEFAULT 0,
    sales        numeric(20, 2) NOT NULL DEFAULT 0,   -- change of cumulative sales in the month
    buyers       bigint NOT NULL DEFAULT 0,           -- last purchase within the month
    PRIMARY KEY (tenant_id, scope, span, month, from_segment, to_segment)
);

-- Databases that had reports before this migration: the timeline starts from each customer's
-- current row, so months before the next one are marked incomplete (their earlier history is
-- in portfolio_daily_deltas, but not per customer).
CREATE TABLE report_history_start (
    tenant_id     text NOT NULL,
    scope         text NOT NULL,
    complete_from date NOT NULL,    -- first month whose transitions are complete
    PRIMARY KEY (tenant_id, scope)
);
INSERT INTO report_timeline (tenant_id, scope, customer_id, seq, effective_on, segment,
                             purchase_count, total_amount, first_purchase_on, last_purchase_on)
SELECT tenant_id, scope, customer_id, seq, effective_on, segment, purchase_count, total_amount,
       first_purchase_on, last_purchase_on
FROM report_customers;
INSERT INTO report_moves (tenant_id, scope, span, month, from_segment, to_segment, customers,
                          sales, buyers)
SELECT tenant_id, scope, 1, date_trunc('month', effective_on)::date, 'new', segment, count(*),
       sum(total_amount),
       count(*) FILTER (WHERE date_trunc('month', last_purchase_on) = date_trunc('month', effective_on))
FROM report_customers
WHERE segment IS NOT NULL
GROUP BY 1, 2, 3, 4, 5, 6;
INSERT INTO report_history_start (tenant_id, scope, complete_from)
SELECT DISTINCT tenant_id, scope, (date_trunc('month', now()) + interval '1 month')::date
FROM report_customers;

-- VIPs and RFM lists: most valuable first within a scope, whatever the segment.
CREATE INDEX report_customers_total
    ON report_customers (tenant_id, scope, total_amount DESC, customer_id)
    WHERE segment IS NOT NULL;

-- RFM: the tenant's rank borders (JSON validated by services.reports.analysis.RfmThresholds).
CREATE TABLE report_rfm_thresholds (
    tenant_id  text PRIMARY KEY,
    thresholds jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- DM response tracking (レスポンス推移表): named tables of mails sent and responses per month
-- and segment, with the segment's size on the mailing day taken from the portfolio history.
CREATE TABLE report_dm_tables (
    tenant_id  text NOT NULL,
    table_id   bigserial NOT NULL,
    name       text NOT NULL,
    scope      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, table_id),
    UNIQUE (tenant_id, name)
);
CREATE TABLE report_dm_entries (
    tenant_id    text NOT NULL,
    table_id     bigint NOT NULL,
    month        date NOT NULL,
    segment      text NOT NULL,
    sent_on      date NOT NULL,
    segment_size bigint NOT NULL,
    mailed       bigint NOT NULL CHECK (mailed >= 0),
    responses    bigint NOT NULL CHECK (responses >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, table_id, month, segment),
    FOREIGN KEY (tenant_id, table_id) REFERENCES report_dm_tables ON DELETE CASCADE
);
