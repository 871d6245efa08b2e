-- Owner: the notifier (services/notifier/store/); no other service reads these.
-- Notifier (issue 7): alerts and their deliveries, per-tenant notification settings, follow-up
-- sequences, and additive columns on the task list and comebacks. Design and reasons:
-- services/notifier/README.md.

-- The task list now also holds at-risk warnings and sequence steps (reason at_risk | sequence).
ALTER TABLE followups
    ADD COLUMN channel          text,      -- sequence steps: post | email | phone | fax
    ADD COLUMN note             text,      -- what to do, rendered from the tenant's template
    ADD COLUMN entry_seq        bigint,    -- sequence steps: seq of the change entering the segment
    ADD COLUMN step             smallint,  -- sequence steps: position in the sequence, from 0
    ADD COLUMN last_purchase_on date;      -- at-risk tasks: the silence began after this day

-- Comebacks: where the customer belongs and what they came back from (older rows: null, the
-- API falls back to the task of the lapse).
ALTER TABLE comebacks
    ADD COLUMN branch_id    text,
    ADD COLUMN from_segment text;

-- Per-tenant notification settings (recipients, immediate or digest per segment, at-risk
-- policy, templates) as validated JSON; the webhook signing secret apart, never returned.
CREATE TABLE notification_settings (
    tenant_id      text PRIMARY KEY,
    settings       jsonb NOT NULL,
    webhook_secret text,
    version        integer NOT NULL DEFAULT 1,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Follow-up sequences: per tenant and segment entered, the steps scheduled as tasks.
CREATE TABLE followup_sequences (
    tenant_id  text NOT NULL,
    segment    text NOT NULL,
    sequence   jsonb NOT NULL,               -- {"name", "steps": [{"offset_days", "channel", "template"}]}
    version    integer NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, segment)
);

-- One alert per customer and lapse (lapsed:{customer}:{seq}) or silence episode
-- (at_risk:{customer}:{last_purchase_on}), however often its cause is delivered.
CREATE TABLE alerts (
    id               bigserial PRIMARY KEY,
    tenant_id        text NOT NULL,
    alert_key        text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('lapsed', 'at_risk')),
    customer_id      text NOT NULL,
    branch_id        text,                   -- the customer's home branch: where it is routed
    segment          text NOT NULL,
    priority         smallint NOT NULL,      -- as followups.priority: most valuable first
    total_amount     numeric(16, 2) NOT NULL,
    last_purchase_on date,
    effective_on     date NOT NULL,          -- lapsed on / noticed on
    seq              bigint,                 -- lapses: seq of the 'all'-scope change
    mode             text NOT NULL CHECK (mode IN ('immediate', 'digest')),
    status           text NOT NULL DEFAULT 'raised' CHECK (status IN ('raised', 'withdrawn')),
    subject          text NOT NULL,          -- rendered once: every resend carries the same text
    body             text NOT NULL,
    details          jsonb NOT NULL DEFAULT '{}',
    raised_at        timestamptz NOT NULL,
    UNIQUE (tenant_id, alert_key)
);
CREATE INDEX alerts_list ON alerts (tenant_id, priority, total_amount DESC, id);
CREATE INDEX alerts_customer ON alerts (tenant_id, customer_id);

-- The deliveries: an outbox with one row per alert and channel target (e-mail: one message to
-- every routed address; webhook: one row per URL), written in the same transaction as the
-- alert. The id is deterministic and is the e-mail's Message-ID and the webhook's event id, so
-- a resend after a crash between the receiver's acceptance and this record can be dropped.
-- Digest members (mode digest) wait for their morning, then become one digest row each.
CREATE TABLE alert_deliveries (
    id              text PRIMARY KEY,
    tenant_id       text NOT NULL,
    alert_id        bigint REFERENCES alerts,          -- null for a digest
    kind            text NOT NULL CHECK (kind IN ('alert', 'digest')),
    channel         text NOT NULL CHECK (channel IN ('email', 'webhook')),
    target          text NOT NULL,                     -- e-mail: addresses, comma-separated; webhook: URL
    branch_id       text,                              -- routing (digests are per branch)
    mode            text NOT NULL CHECK (mode IN ('immediate', 'digest')),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'dead', 'cancelled', 'digested')),
    priority        smallint NOT NULL,
    total_amount    numeric(16, 2) NOT NULL,
    subject         text,                              -- e-mail subject
    body            text NOT NULL,                     -- e-mail text / webhook JSON, exactly as sent
    digest_due_at   timestamptz,                       -- digest members: their morning (tenant clock)
    digest_id       text REFERENCES alert_deliveries,  -- digest members: the digest they went out in
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(), -- wall clock: retries and the worker's lease
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- The worker's queue: due sendable rows, most valuable first.
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at)
    WHERE status = 'pending' AND mode = 'immediate';
-- Digest members waiting for their morning.
CREATE INDEX alert_deliveries_digest ON alert_deliveries (digest_due_at)
    WHERE status = 'pending' AND mode = 'digest';
CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id);
CREATE INDEX alert_deliveries_tenant ON alert_deliveries (tenant_id, status, created_at);
