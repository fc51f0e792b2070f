/* meterql usage: metric 'bm-count' ('Count metric'): COUNT; window none */
WITH "events" AS (
  SELECT
    "e"."customer_id" AS "customer_id"
  FROM events AS "e"
  WHERE
    "e"."timestamp" >= CAST('2026-01-01 00:00:00' AS TIMESTAMP)
    AND "e"."timestamp" < CAST('2026-01-04 00:00:00' AS TIMESTAMP)
    AND "e"."event_type" IN ('embedding', 'llm_request')
), "usage" AS (
  SELECT
    "customer_id",
    COUNT(*) AS "m0_value" /* metric 'bm-count' ('Count metric'): COUNT */
  FROM "events"
  GROUP BY
    "customer_id"
)
SELECT
  "customer_id",
  'bm-count' AS "metric_id", /* metric 'bm-count' ('Count metric'): COUNT */
  CAST('2026-01-01 00:00:00' AS TIMESTAMP) AS "window_start",
  CAST('2026-01-04 00:00:00' AS TIMESTAMP) AS "window_end",
  CAST("m0_value" AS DECIMAL(38, 12)) AS "value"
FROM "usage"
ORDER BY
  "customer_id",
  "window_start",
  "metric_id"
