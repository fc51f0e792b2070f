-- A customer's `external_id` (Metronome's deprecated "alias that can be used to refer to this
-- customer in usage events") is an ingest key, like its ingest aliases.  Customers applied
-- before were stored without that key: add it, unless another customer already holds the key
-- or two customers give it (applying them again reports the conflict).
INSERT INTO customer_keys
SELECT key, any_value(id)
FROM (SELECT json_extract_string(doc, '$.external_id') AS key, id FROM customers)
WHERE key IS NOT NULL AND key NOT IN (SELECT key FROM customer_keys)
GROUP BY key
HAVING count(*) = 1;
