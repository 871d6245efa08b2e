-- Owner: shared/kafka.py (written by every consumer; published by the classifier's relay).
-- The outbox holds one row per transaction with all of its records packed together
-- (one line per record: topic TAB key-as-JSON TAB payload). The classifier writes thousands of
-- records per batch; as single rows they were the largest PostgreSQL cost of a batch (COPY,
-- the id index, the relay's read and delete). Packed, a batch is one row, compressed with lz4
-- where the server has it.
ALTER TABLE outbox RENAME TO outbox_rows_v1;

CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    records      bytea NOT NULL,
    record_count integer NOT NULL CHECK (record_count > 0),
    created_at   timestamptz NOT NULL DEFAULT now()
);

DO $$
BEGIN
    ALTER TABLE outbox ALTER COLUMN records SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;  -- a server built without lz4 keeps its default (pglz)
END $$;

-- Rows not yet published when this migration runs are carried over, in order, as one pack.
INSERT INTO outbox (records, record_count)
SELECT convert_to(string_agg(
           topic || E'\t' || to_json(key)::text || E'\t' || replace(payload, E'\n', ' '),
           E'\n' ORDER BY id), 'UTF8'),
       count(*)
FROM outbox_rows_v1
HAVING count(*) > 0;

DROP TABLE outbox_rows_v1;
