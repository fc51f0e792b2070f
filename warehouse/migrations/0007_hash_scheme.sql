-- The scheme an invoice's content_hash was computed under (engine.content_hash.SCHEME: meterql's
-- hash formula and the DuckDB version, whose hash() may change between releases).  A run
-- recomputes, from their stored lines, the hashes of drafts of another scheme before comparing
-- them.  NULL (invoices written before): unknown, recomputed the same way.
ALTER TABLE invoices ADD COLUMN hash_scheme VARCHAR;
