-- Reports: per-customer view from customer-states, portfolio aggregates and daily deltas.
CREATE TABLE report_customers (
    tenant_id         text NOT NULL,
    scope             text NOT NULL,
    customer_id       text NOT NULL,
    seq               bigint NOT NULL,
    segment           text,
    purchase_count    integer NOT NULL,
    total_amount      numeric(16, 2) NOT NULL,
    first_purchase_on date,
    last_purchase_on  date,
    home_branch_id    text,
    effective_on      date NOT NULL,
    PRIMARY KEY (tenant_id, scope, customer_id)
);
CREATE INDEX report_customers_segment ON report_customers (tenant_id, scope, segment, total_amount DESC, customer_id);

-- Live portfolio: customers and cumulative sales per segment (never computed by scanning customers).
CREATE TABLE portfolio_current (
    tenant_id text NOT NULL,
    scope     text NOT NULL,
    segment   text NOT NULL,
    customers bigint NOT NULL DEFAULT 0,
    sales     numeric(20, 2) NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, scope, segment)
);

-- Changes per day (effective_on, tenant calendar): the portfolio as of D is the sum up to D.
CREATE TABLE portfolio_daily_deltas (
    tenant_id text NOT NULL,
    scope     text NOT NULL,
    day       date NOT NULL,
    segment   text NOT NULL,
    customers bigint NOT NULL DEFAULT 0,
    sales     numeric(20, 2) NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, scope, day, segment)
);
