-- The catalog objects.  Each object is stored as its canonical JSON document (ids resolved),
-- with the columns the engine joins on kept beside it.
CREATE TABLE credit_types (
    id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE,
    precision INTEGER NOT NULL,
    doc JSON NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
INSERT INTO credit_types VALUES (
    '2714e483-4ff1-48e4-9e25-ac732e8f24f2', 'USD (cents)', 0,
    '{"id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2", "name": "USD (cents)", "precision": 0}',
    now()::TIMESTAMP, now()::TIMESTAMP
);

CREATE TABLE billable_metrics (
    id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE,
    archived BOOLEAN NOT NULL,
    doc JSON NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE products (
    id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE,
    billable_metric_id VARCHAR,
    doc JSON NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE rate_cards (
    id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE,
    doc JSON NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE customers (
    id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE,
    doc JSON NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Every key an event's customer_id may carry: the customer's own id and each ingest alias.
CREATE TABLE customer_keys (
    key VARCHAR PRIMARY KEY,
    customer_id VARCHAR NOT NULL
);

CREATE TABLE contracts (
    id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE,
    customer_id VARCHAR NOT NULL,
    rate_card_id VARCHAR NOT NULL,
    doc JSON NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
