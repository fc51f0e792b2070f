-- What wrote an invoice_runs row: 'run' (`invoice run`) or 'regenerate' (`invoice regenerate`,
-- its summary naming the invoice it replaced).  Rows written before: runs.
ALTER TABLE invoice_runs ADD COLUMN kind VARCHAR DEFAULT 'run';
