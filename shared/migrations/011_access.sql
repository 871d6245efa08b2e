-- Accounts and access (issue 14; shared/access): people who log in, API keys of systems, login
-- sessions, failed logins (rate limit) and the audit log of personal-data exports and erasures.
-- Owned by shared/access; every service reads them to know who is asking.

-- People log in with e-mail and password; the e-mail names one person across all tenants (the
-- login form asks for nothing else). branches: empty means the whole chain.
CREATE TABLE people (
    person_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     text NOT NULL REFERENCES tenants,
    email         text NOT NULL,
    role          text NOT NULL CHECK (role IN ('owner', 'manager', 'staff')),
    branches      text[] NOT NULL DEFAULT '{}',
    password_hash text NOT NULL,                 -- argon2id, never the password
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);
CREATE UNIQUE INDEX people_email ON people (lower(email));

-- API keys: the key is shown once; only its SHA-256 is kept (a random 256-bit key needs no slow
-- hash: nothing to guess). key_id is public (lists, revocation). branches: empty = whole chain.
CREATE TABLE api_keys (
    key_id       text PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants,
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('ingest', 'read', 'admin')),
    branches     text[] NOT NULL DEFAULT '{}',
    key_hash     bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,                     -- kept at most once a minute per process
    revoked_at   timestamptz
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);

-- Login sessions, server-side: the cookie holds a random token, the table its SHA-256.
CREATE TABLE sessions (
    token_hash   bytea PRIMARY KEY,
    person_id    bigint NOT NULL REFERENCES people ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    address      text
);
CREATE INDEX sessions_by_person ON sessions (person_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Failed logins, per account ('email:…') and per address ('address:…'), for the rate limit.
CREATE TABLE login_failures (
    subject   text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_by_subject ON login_failures (subject, failed_at);

-- Who took personal data out, and which customers were erased (個人情報保護法).
CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,                    -- a person's e-mail or 'key:<key_id> (<name>)'
    action     text NOT NULL CHECK (action IN ('export', 'erase')),
    subject    text NOT NULL,                    -- the list (path and query) or the customer
    rows       bigint,
    format     text
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, id DESC);
