/* meterql usage: metric 'bm-count' ('Count metric'): COUNT; window none; group by ['region', 'model'] */
WITH "events" AS (
  SELECT
    "e"."customer_id" AS "customer_id",
    "e"."p_region" AS "p_region",
    "e"."p_model" AS "p_model"
  FROM "events" AS "e"
  WHERE
    "e"."timestamp" >= CAST('2026-01-01 00:00:00' AS TIMESTAMPNTZ)
    AND "e"."timestamp" < CAST('2026-01-04 00:00:00' AS TIMESTAMPNTZ)
    AND NOT "e"."p_model" IS NULL
    AND "e"."p_region" IN ('eu-west-1', 'us-east-1')
    AND NOT "e"."p_user" IS NULL
), "usage" AS (
  SELECT
    "customer_id",
    "p_region",
    "p_model",
    COUNT(*) AS "m0_value" /* metric 'bm-count' ('Count metric'): COUNT */
  FROM "events"
  GROUP BY
    "customer_id",
    "p_region",
    "p_model"
)
SELECT
  "customer_id",
  'bm-count' AS "metric_id", /* metric 'bm-count' ('Count metric'): COUNT */
  CAST('2026-01-01 00:00:00' AS TIMESTAMPNTZ) AS "window_start",
  CAST('2026-01-04 00:00:00' AS TIMESTAMPNTZ) AS "window_end",
  "p_region",
  "p_model",
  CAST("m0_value" AS DECIMAL(38, 12)) AS "value"
FROM "usage"
ORDER BY
  "customer_id",
  "window_start",
  "p_region",
  "p_model",
  "metric_id"
