-- Owner: the notifier (services/notifier/store/); no other service reads these.
-- Notifier: follow-up tasks (one per customer and lapse) and comebacks.
CREATE TABLE followups (
    id            bigserial PRIMARY KEY,
    tenant_id     text NOT NULL,
    customer_id   text NOT NULL,
    branch_id     text,                       -- the customer's home branch; null: chain only
    segment       text NOT NULL,              -- the segment the customer lapsed into
    reason        text NOT NULL,              -- lapsed (later: at_risk, sequence steps)
    -- cancelled: the lapse behind the task turned out premature (history still arriving).
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'cancelled')),
    outcome       text,                       -- done (by staff) | comeback | reclassified | superseded
    -- Most valuable first (loyal_lapsed = 0 …); decided in services/notifier/domain/followups.py and
    -- stored so that listing and paging walk an index instead of sorting every open task.
    priority      smallint NOT NULL,
    lapse_seq     bigint,                     -- seq of the 'all'-scope change that opened it
    created_on    date NOT NULL,              -- the day the customer lapsed
    due_on        date NOT NULL,              -- the day the lapse was noticed
    done_on       date,
    total_amount  numeric(16, 2) NOT NULL,
    dedupe_key    text NOT NULL,              -- lapsed:{customer_id}:{seq}
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, dedupe_key)
);
-- The task list: per tenant and status, in the order the API pages through.
CREATE INDEX followups_list ON followups (tenant_id, status, priority, total_amount DESC, id);
-- A comeback closes the customer's open lapse tasks.
CREATE INDEX followups_customer_open ON followups (tenant_id, customer_id, lapse_seq)
    WHERE status = 'open';

-- Comebacks: a lapsed customer who bought again, counted once per change (seq, 'all' scope).
CREATE TABLE comebacks (
    tenant_id    text NOT NULL,
    customer_id  text NOT NULL,
    seq          bigint NOT NULL,
    segment      text NOT NULL,               -- the segment the customer came back into
    came_back_on date NOT NULL,
    followup_id  bigint,                      -- the task of the lapse that ended, if one was opened
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id, seq)
);
CREATE INDEX comebacks_day ON comebacks (tenant_id, came_back_on);
