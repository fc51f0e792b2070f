-- Invoices (issue 4).  Nothing here is ever deleted: a draft recomputed with different content
-- gets a new revision of line items (the old revision stays), a voided invoice stays with status
-- 'void', a regenerated one points to its replacement.
CREATE TABLE invoices (
    id VARCHAR PRIMARY KEY,               -- uuid5(contract id, period start[, credit type])
    contract_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    type VARCHAR NOT NULL,                -- USAGE
    period_start TIMESTAMP NOT NULL,      -- naive UTC, inclusive
    period_end TIMESTAMP NOT NULL,        -- naive UTC, exclusive
    credit_type_id VARCHAR NOT NULL,
    credit_type_name VARCHAR NOT NULL,
    credit_precision INTEGER NOT NULL,
    status VARCHAR NOT NULL,              -- draft | finalized | void
    revision INTEGER NOT NULL,            -- the revision of invoice_line_items it shows
    content_hash VARCHAR NOT NULL,        -- of its line items: a re-run that computes the
                                          -- same content changes nothing
    subtotal DECIMAL(38, 12) NOT NULL,
    total DECIMAL(38, 12) NOT NULL,
    line_count INTEGER NOT NULL,
    data_seq INTEGER NOT NULL,            -- computed from the event batches of
                                          -- invoice_event_batches with seq <= data_seq
    computed_as_of TIMESTAMP NOT NULL,    -- --as-of of the run that last computed it
    replaces VARCHAR,                     -- regenerate: the invoice this one replaces
    superseded_by VARCHAR,                -- regenerate: the invoice that replaced this one
    created_at TIMESTAMP NOT NULL,        -- wall clock (bookkeeping; not in the invoice JSON)
    updated_at TIMESTAMP NOT NULL,
    finalized_at TIMESTAMP,
    voided_at TIMESTAMP
);

-- Quantities, unit prices and tier bounds are never rounded: rating refuses conversions and
-- prices that would need more than the 18 decimal places stored here.  Totals are rounded to
-- the credit type's precision (at most 12 places).  Lines are read in a deterministic order:
-- product name, product id, pricing values, presentation values, starting_at, tier.
CREATE TABLE invoice_line_items (
    invoice_id VARCHAR NOT NULL,
    revision INTEGER NOT NULL,
    product_id VARCHAR NOT NULL,          -- name and group keys: invoice_products
    rate_type VARCHAR NOT NULL,           -- FLAT | TIERED
    rate_card_id VARCHAR NOT NULL,
    rate_index INTEGER NOT NULL,          -- position of the rate in its rate card's rates
    pricing_group_values VARCHAR[] NOT NULL,       -- in the order of pricing_group_keys
    presentation_group_values VARCHAR[] NOT NULL,  -- in the order of presentation_group_keys
    starting_at TIMESTAMP NOT NULL,
    ending_before TIMESTAMP NOT NULL,
    tier_index INTEGER,                   -- TIERED: 0, 1, ...
    tier_starting_at DECIMAL(38, 18),     -- TIERED: the quantity the tier starts after
    tier_size DECIMAL(38, 18),            -- TIERED: NULL for the unbounded last tier
    quantity DECIMAL(38, 18) NOT NULL,
    unit_price DECIMAL(38, 18) NOT NULL,
    total DECIMAL(38, 12) NOT NULL
);

-- The products of an invoice revision as they were when it was computed (a later rename or
-- key change of the product does not change an existing invoice).
CREATE TABLE invoice_products (
    invoice_id VARCHAR NOT NULL,
    revision INTEGER NOT NULL,
    product_id VARCHAR NOT NULL,
    product_name VARCHAR NOT NULL,
    billable_metric_id VARCHAR,
    pricing_group_keys VARCHAR[] NOT NULL,
    presentation_group_keys VARCHAR[] NOT NULL
);

-- Every committed ingest batch, numbered by the invoice run (or regenerate) that first saw it.
-- An invoice computed at data_seq N saw exactly the batches with seq <= N; events of later
-- batches inside a finalized invoice's period are its late events.
CREATE TABLE invoice_event_batches (
    batch_id VARCHAR PRIMARY KEY,
    seq INTEGER NOT NULL
);

-- The ledger of invoice runs: one row per run that wrote (engine.invoice_write.record_run).
CREATE TABLE invoice_runs (
    run_id VARCHAR PRIMARY KEY,
    as_of TIMESTAMP NOT NULL,
    data_seq INTEGER NOT NULL,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    finalized INTEGER NOT NULL,
    unchanged INTEGER NOT NULL,
    summary JSON NOT NULL
);
