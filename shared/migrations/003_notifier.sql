-- Notifier: follow-up tasks, one per customer and lapse.
CREATE TABLE followups (
    id            bigserial PRIMARY KEY,
    tenant_id     text NOT NULL,
    customer_id   text NOT NULL,
    branch_id     text,
    segment       text NOT NULL,
    reason        text NOT NULL,              -- lapsed | at_risk | sequence step
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done')),
    outcome       text,                       -- comeback | done-by-staff | ...
    created_on    date NOT NULL,
    due_on        date NOT NULL,
    done_on       date,
    total_amount  numeric(16, 2) NOT NULL,
    dedupe_key    text NOT NULL,              -- one task per customer and lapse
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, dedupe_key)
);
CREATE INDEX followups_open ON followups (tenant_id, status, due_on);

-- Comebacks: a lapsed customer who bought again (counted once per comeback).
CREATE TABLE comebacks (
    tenant_id   text NOT NULL,
    customer_id text NOT NULL,
    seq         bigint NOT NULL,
    segment     text NOT NULL,
    came_back_on date NOT NULL,
    followup_id bigint,
    PRIMARY KEY (tenant_id, customer_id, seq)
);
