-- Owner: ingest (services/ingest/imports/store.py).
-- Sales imports publish in date order (issue 5, "history gives history"). Design:
-- services/ingest/imports/runner.py. An import of sales now runs in two phases:
--
-- 'read'    the file is parsed and every accepted row is copied (COPY) into the import's own
--           staging table, import_staged_<id> (UNLOGGED; created, indexed and dropped by
--           services/ingest/imports/store.py), in the same transaction as the checkpoint that covers
--           it: `last_line`, the counts and the rejected rows, as before.
-- 'publish' the staged rows are published ORDER BY occurred_at, line, a page at a time; after
--           each page the broker acknowledged, the checkpoint is the number published and the
--           sort key of the last one (`publish_after_at`, `publish_after_line`).
--
-- The staging table is unlogged (no WAL for a copy of the file that the file itself can
-- rebuild): after a database crash it is empty, the resumed import notices that its row count
-- is not `accepted` and reads the file again from the start (the event ids are stable, so what
-- was already published again changes nothing).
ALTER TABLE imports
    ADD COLUMN phase text NOT NULL DEFAULT 'read' CHECK (phase IN ('read', 'publish')),
    ADD COLUMN published bigint NOT NULL DEFAULT 0,   -- events acknowledged, in date order
    ADD COLUMN publish_after_at timestamptz,          -- the publish checkpoint's sort key
    ADD COLUMN publish_after_line bigint,
    ADD COLUMN resumed_from_published bigint;         -- `published` when the current run began
