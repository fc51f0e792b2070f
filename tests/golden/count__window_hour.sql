/* meterql usage: metric 'bm-count' ('Count metric'): COUNT; window hour */
WITH "events" AS (
  SELECT
    "e"."customer_id" AS "customer_id",
    DATE_TRUNC('HOUR', "e"."timestamp") AS "bucket"
  FROM events AS "e"
  WHERE
    "e"."timestamp" >= CAST('2026-01-01 00:00:00' AS TIMESTAMP)
    AND "e"."timestamp" < CAST('2026-01-04 00:00:00' AS TIMESTAMP)
), "usage" AS (
  SELECT
    "customer_id",
    "bucket",
    COUNT(*) AS "m0_value" /* metric 'bm-count' ('Count metric'): COUNT */
  FROM "events"
  GROUP BY
    "customer_id",
    "bucket"
)
SELECT
  "customer_id",
  'bm-count' AS "metric_id", /* metric 'bm-count' ('Count metric'): COUNT */
  GREATEST("bucket", CAST('2026-01-01 00:00:00' AS TIMESTAMP)) AS "window_start",
  LEAST("bucket" + INTERVAL '1' HOUR, CAST('2026-01-04 00:00:00' AS TIMESTAMP)) AS "window_end",
  CAST("m0_value" AS DECIMAL(38, 12)) AS "value"
FROM "usage"
ORDER BY
  "customer_id",
  "window_start",
  "metric_id"
