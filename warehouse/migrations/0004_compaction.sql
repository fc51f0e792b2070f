-- Compaction (warehouse.compact).  Files a compaction replaced leave the manifest in the same
-- transaction that lists their replacement, but stay on disk for a grace period, so a reader
-- that listed the manifest just before the commit can still open them; a later compaction
-- deletes them once retired_at + grace has passed.  Each compaction is also a row of
-- ingest_batches with status 'compacted' (sources = the replaced files, relative to events/).
CREATE TABLE retired_event_files (
    path VARCHAR PRIMARY KEY,             -- relative to the home's events/ directory
    compaction_id VARCHAR NOT NULL,       -- the ingest_batches row of the compaction
    retired_at TIMESTAMP NOT NULL         -- wall clock (naive UTC) of the commit
);
