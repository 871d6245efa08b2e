-- Owner: the reports service (services/reports/store/); no other service reads these.
-- Reports: per-customer view from customer-states, portfolio aggregates and daily deltas.
-- Invariant kept by services/reports: for every (tenant, scope, segment),
--   portfolio_current = SUM(portfolio_daily_deltas over all days)
--                     = COUNT / SUM(total_amount) of report_customers in that segment,
-- so the portfolio is read from the small aggregate tables and never by scanning customers.
CREATE TABLE report_customers (
    tenant_id         text NOT NULL,
    scope             text NOT NULL,
    customer_id       text NOT NULL,
    seq               bigint NOT NULL,          -- last applied CustomerState.seq (idempotency)
    segment           text,                     -- null: no counted purchase (not in the portfolio)
    purchase_count    integer NOT NULL,
    total_amount      numeric(16, 2) NOT NULL,
    first_purchase_on date,
    last_purchase_on  date,
    home_branch_id    text,
    effective_on      date NOT NULL,            -- day of the last applied change
    -- What the last applied change moved the customer from, as counted here: undoing it (a
    -- premature lapse superseded by late history) must reverse exactly what was added.
    prev_segment      text,
    prev_total_amount numeric(16, 2) NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, scope, customer_id)
);
-- The segment lists: most valuable first, keyset pagination on (total_amount DESC, customer_id).
CREATE INDEX report_customers_segment
    ON report_customers (tenant_id, scope, segment, total_amount DESC, customer_id)
    WHERE segment IS NOT NULL;

-- Live portfolio: customers and cumulative sales per segment.
CREATE TABLE portfolio_current (
    tenant_id text NOT NULL,
    scope     text NOT NULL,
    segment   text NOT NULL,
    customers bigint NOT NULL DEFAULT 0,
    sales     numeric(20, 2) NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, scope, segment)
);

-- Changes per day (effective_on, tenant calendar): the portfolio as of D is the sum up to D.
-- Rows are per day x segment (about 3,650 per scope and year at most), never per customer.
CREATE TABLE portfolio_daily_deltas (
    tenant_id text NOT NULL,
    scope     text NOT NULL,
    day       date NOT NULL,
    segment   text NOT NULL,
    customers bigint NOT NULL DEFAULT 0,
    sales     numeric(20, 2) NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, scope, day, segment)
);
