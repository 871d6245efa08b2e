-- Notifier (issue 11): corrections of a customer's chain-wide timeline (`corrects_from` on
-- kizuna.segment-changes.v1). Design and reasons: services/notifier/README.md, "Corrections".

-- Each correction once per customer, by the seq of the change that opened it: a redelivered
-- correction withdraws nothing twice, and a lapse or segment entry the corrected timeline makes
-- again knows which correction it belongs to (the latest before its seq).
CREATE TABLE notifier_corrections (
    tenant_id     text NOT NULL,
    customer_id   text NOT NULL,
    seq           bigint NOT NULL,
    corrects_from date NOT NULL,            -- withdraws what changes dated on or after it made
    since_seq     bigint NOT NULL DEFAULT 0, -- schema 1 (supersedes_seq): only from this seq on
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id, seq)
);

-- closed_by_seq: the chain-wide change that closed the task (a comeback, new borders, a move
-- that stopped a sequence), so withdrawing that change opens the task again.
-- withdrawn_by: the correction that withdrew the change which made the task (lapse or segment
-- entry); the corrected timeline making it again takes the task back instead of a new one.
ALTER TABLE followups
    ADD COLUMN closed_by_seq bigint,
    ADD COLUMN withdrawn_by  bigint;
-- outcome gains 'withdrawn' (the lapse or entry behind the task was withdrawn by a correction).

-- A correction reads and changes one customer's tasks, whatever their status.
CREATE INDEX followups_customer ON followups (tenant_id, customer_id, reason);
