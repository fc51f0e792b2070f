/* meterql usage: metric 'bm-unique' ('Unique metric'): UNIQUE of 'tokens'; window none */
WITH "events" AS (
  SELECT
    "e"."customer_id" AS "customer_id",
    "e"."p_tokens" AS "m0_arg"
  FROM events AS "e"
  WHERE
    "e"."timestamp" >= CAST('2026-01-01 00:00:00' AS TIMESTAMP)
    AND "e"."timestamp" < CAST('2026-01-04 00:00:00' AS TIMESTAMP)
    AND NOT "e"."p_tokens" IS NULL
), "usage" AS (
  SELECT
    "customer_id",
    COUNT(DISTINCT "m0_arg") AS "m0_value" /* metric 'bm-unique' ('Unique metric'): UNIQUE of 'tokens' */
  FROM "events"
  GROUP BY
    "customer_id"
)
SELECT
  "customer_id",
  'bm-unique' AS "metric_id", /* metric 'bm-unique' ('Unique metric'): UNIQUE of 'tokens' */
  CAST('2026-01-01 00:00:00' AS TIMESTAMP) AS "window_start",
  CAST('2026-01-04 00:00:00' AS TIMESTAMP) AS "window_end",
  CAST("m0_value" AS DECIMAL(38, 12)) AS "value"
FROM "usage"
ORDER BY
  "customer_id",
  "window_start",
  "metric_id"
