-- Owners. tenants, tenant_rules: shared (shared/tenants.py writes them: reports' PUT /v1/rules
--   adds a version, the classifier marks it applied); every service may read a tenant's time
--   zone and borders. purchases (the event store) and customer_states: the classifier; another
--   service reads them only through the views of 015_views.sql. outbox, consumer_offsets:
--   shared/kafka.py (each consumer writes its rows in its batch's transaction; the
--   classifier's relay publishes and deletes outbox rows).
-- Tenants, their versioned borders, the event store, classifier state, outbox, consumer offsets.
CREATE TABLE tenants (
    tenant_id             text PRIMARY KEY,
    time_zone             text NOT NULL DEFAULT 'Asia/Tokyo',
    rules_version         integer NOT NULL DEFAULT 0,   -- newest version in tenant_rules
    applied_rules_version integer NOT NULL DEFAULT 0,   -- version the classifier has applied
    created_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenant_rules (
    tenant_id  text NOT NULL REFERENCES tenants,
    version    integer NOT NULL,
    rules      jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);

-- The event store: every accepted purchase event once, by (tenant, event_id).
CREATE TABLE purchases (
    tenant_id   text NOT NULL,
    event_id    text NOT NULL,
    branch_id   text NOT NULL,
    customer_id text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('sale', 'return', 'void')),
    occurred_at timestamptz NOT NULL,
    occurred_on date NOT NULL,              -- calendar date in the tenant's zone
    amount      numeric(16, 2) NOT NULL,
    order_id    text,
    payload     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX purchases_customer ON purchases (tenant_id, customer_id);

-- The classifier's state per customer and scope (a branch_id or 'all').
CREATE TABLE customer_states (
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
    clock_on          date NOT NULL,        -- latest date this state was classified at
    lapse_due_on      date,                 -- set while active: the day it lapses without events
    rules_version     integer NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- customer before scope: a batch reads all scopes of its customers in one index range
    PRIMARY KEY (tenant_id, customer_id, scope)
);
CREATE INDEX customer_states_lapse_due ON customer_states (tenant_id, lapse_due_on) WHERE lapse_due_on IS NOT NULL;

-- Transactional outbox: written with the state, published in id order by the relay.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    topic      text NOT NULL,
    key        text NOT NULL,
    payload    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Offsets a consumer keeps in the same transaction as its effects (exactly-once in PostgreSQL).
CREATE TABLE consumer_offsets (
    group_id    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    cluster_id  text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
