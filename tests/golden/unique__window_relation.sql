/* meterql usage: metric 'bm-unique' ('Unique metric'): UNIQUE of 'tokens'; window relation */
WITH "events" AS (
  SELECT
    "e"."customer_id" AS "customer_id",
    "w"."window_id" AS "window_id",
    "e"."p_tokens" AS "m0_arg"
  FROM events AS "e"
  JOIN windows AS "w"
    ON "w"."customer_id" = "e"."customer_id"
    AND "w"."window_start" <= "e"."timestamp"
    AND "e"."timestamp" < "w"."window_end"
  WHERE
    NOT "e"."p_tokens" IS NULL
), "usage" AS (
  SELECT
    "customer_id",
    "window_id",
    COUNT(DISTINCT "m0_arg") AS "m0_value" /* metric 'bm-unique' ('Unique metric'): UNIQUE of 'tokens' */
  FROM "events"
  GROUP BY
    "customer_id",
    "window_id"
)
SELECT
  "customer_id",
  'bm-unique' AS "metric_id", /* metric 'bm-unique' ('Unique metric'): UNIQUE of 'tokens' */
  "window_id",
  CAST("m0_value" AS DECIMAL(38, 12)) AS "value"
FROM "usage"
ORDER BY
  "customer_id",
  "window_id",
  "metric_id"
