-- Owner: ingest (services/ingest/imports/store.py). customers (master data) is read by reports
--   and the notifier only through the view customer_details of 015_views.sql.
-- CSV imports (issue 5): one row per import with its progress and checkpoint, the rejected rows
-- with line/column/value/reason, and the customers' master data. Design:
-- services/ingest/imports/runner.py.

-- An import of one file. `last_line` is the checkpoint: every data row starting on or before it
-- is acknowledged by the broker (sales), stored (customers) or recorded as rejected, so a resumed
-- run skips those rows and re-publishes at most the batch that was in flight (harmless: event
-- ids are stable). `options` holds what the event ids depend on (branch, --map): a file is only
-- resumed with the same options.
CREATE TABLE imports (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('sales', 'customers')),
    file_name       text,
    file_sha256     text NOT NULL,
    size_bytes      bigint,
    options         jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
    encoding        text,
    delimiter       text,
    mapping         jsonb,                        -- one entry per column (csvimport's describe())
    notes           jsonb NOT NULL DEFAULT '[]',  -- mapping notes and the reader's warnings
    rows            bigint NOT NULL DEFAULT 0,    -- data rows read up to the checkpoint
    accepted        bigint NOT NULL DEFAULT 0,
    rejected        bigint NOT NULL DEFAULT 0,
    bytes_read      bigint NOT NULL DEFAULT 0,
    last_line       bigint NOT NULL DEFAULT 0,
    runs            integer NOT NULL DEFAULT 1,   -- 1 + times resumed
    resumed_from_line bigint,                     -- the checkpoint the current run started from
    rows_per_second numeric(12, 1),               -- of the current run
    eta_seconds     numeric(12, 1),
    started_at      timestamptz NOT NULL DEFAULT now(),
    run_started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    error           text
);
CREATE INDEX imports_by_tenant ON imports (tenant_id, id DESC);
CREATE INDEX imports_unfinished ON imports (tenant_id, kind, file_sha256) WHERE status <> 'done';

-- Every rejected row, written in the same transaction as the checkpoint that covers it.
-- `problems`: every [column, value, reason] of the row (the first repeated in the columns).
CREATE TABLE import_rejections (
    import_id   bigint NOT NULL REFERENCES imports ON DELETE CASCADE,
    line        bigint NOT NULL,
    column_name text,
    value       text,
    reason      text NOT NULL,
    problems    jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (import_id, line)
);

-- Customer master data per tenant (upsert by code: a re-import updates the columns its file
-- has and leaves the others alone). Read by shared/customers.py.
CREATE TABLE customers (
    tenant_id    text NOT NULL,
    customer_id  text NOT NULL,
    branch_id    text,
    name         text,
    kana         text,
    company      text,
    postal_code  text,
    address1     text,
    address2     text,
    phone        text,
    fax          text,
    email        text,
    mail_consent boolean,
    import_id    bigint,                  -- the import that last changed the row
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id)
);
