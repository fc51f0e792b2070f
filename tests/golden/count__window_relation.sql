/* meterql usage: metric 'bm-count' ('Count metric'): COUNT; window relation */
WITH "events" AS (
  SELECT
    "e"."customer_id" AS "customer_id",
    "w"."window_id" AS "window_id"
  FROM events AS "e"
  JOIN windows AS "w"
    ON "w"."customer_id" = "e"."customer_id"
    AND "w"."window_start" <= "e"."timestamp"
    AND "e"."timestamp" < "w"."window_end"
), "usage" AS (
  SELECT
    "customer_id",
    "window_id",
    COUNT(*) AS "m0_value" /* metric 'bm-count' ('Count metric'): COUNT */
  FROM "events"
  GROUP BY
    "customer_id",
    "window_id"
)
SELECT
  "customer_id",
  'bm-count' AS "metric_id", /* metric 'bm-count' ('Count metric'): COUNT */
  "window_id",
  CAST("m0_value" AS DECIMAL(38, 12)) AS "value"
FROM "usage"
ORDER BY
  "customer_id",
  "window_id",
  "metric_id"
