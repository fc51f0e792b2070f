-- The ingest ledger and the manifest of committed event files.  Readers see only files listed
-- in event_files; a batch's files are listed in the same transaction that marks it committed.
CREATE TABLE ingest_batches (
    batch_id VARCHAR PRIMARY KEY,
    sources VARCHAR[] NOT NULL,
    status VARCHAR NOT NULL,              -- staged | committed | failed
    clock TIMESTAMP NOT NULL,             -- the ingest clock (--now, or the wall clock)
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    received BIGINT,
    accepted BIGINT,
    duplicates BIGINT,
    rejected BIGINT,
    unknown_customer_events BIGINT,
    rejects_path VARCHAR,
    message VARCHAR
);

CREATE TABLE event_files (
    path VARCHAR PRIMARY KEY,             -- relative to the home's events/ directory
    batch_id VARCHAR NOT NULL,
    event_date DATE NOT NULL,
    row_count BIGINT NOT NULL,
    min_timestamp TIMESTAMP NOT NULL,
    max_timestamp TIMESTAMP NOT NULL,
    property_columns VARCHAR[] NOT NULL,  -- encoded column names (warehouse.layout)
    event_types VARCHAR[] NOT NULL
);
