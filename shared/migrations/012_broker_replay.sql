-- Owner: the classifier's relay (ingest and the importer add rows they have already sent).
-- The embedded broker keeps its log in memory: a crash loses what its consumers had not read.
-- So, with KIZUNA_BROKER_REPLAY on, a sent outbox row is kept, marked with the broker that
-- acknowledged it (its cluster id) and the last offset it took in each partition, until every
-- consumer group of those topics has stored a later offset for that same broker
-- (consumer_offsets); after a broker reset the relay publishes the kept rows again.
-- Accepted purchases are kept the same way: ingest and the importer write the events they have
-- sent as rows already marked sent.
ALTER TABLE outbox
    ADD COLUMN sent_to         text,      -- cluster id that acknowledged the records; NULL: to send
    ADD COLUMN sent_topics     text[],    -- per (topic, partition) written: the last offset
    ADD COLUMN sent_partitions integer[],
    ADD COLUMN sent_offsets    bigint[];

-- The relay reads what is still to send, oldest first; kept rows are not in this index.
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_to IS NULL;
