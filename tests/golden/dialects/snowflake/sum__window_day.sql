/* meterql usage: metric 'bm-sum' ('Sum metric'): SUM of 'tokens'; window day */
WITH "events" AS (
  SELECT
    "e"."customer_id" AS "customer_id",
    DATE_TRUNC('DAY', "e"."timestamp") AS "bucket",
    TRY_CAST("e"."p_tokens" AS DECIMAL(38, 12)) AS "m0_arg"
  FROM "events" AS "e"
  WHERE
    "e"."timestamp" >= CAST('2026-01-01 00:00:00' AS TIMESTAMPNTZ)
    AND "e"."timestamp" < CAST('2026-01-04 00:00:00' AS TIMESTAMPNTZ)
    AND NOT (
      REGEXP_INSTR("e"."p_tokens", '[^0-9.+-]') > 0
      OR NOT REGEXP_INSTR("e"."p_tokens", '^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)$') > 0
    )
    AND NOT REGEXP_INSTR("e"."p_tokens", '[.][0-9]{13}') > 0
    AND ABS(TRY_CAST("e"."p_tokens" AS DECIMAL(38, 12))) < CAST('1000000000000000000' AS DECIMAL(38, 12))
), "usage" AS (
  SELECT
    "customer_id",
    "bucket",
    SUM("m0_arg") AS "m0_value" /* metric 'bm-sum' ('Sum metric'): SUM of 'tokens' */
  FROM "events"
  GROUP BY
    "customer_id",
    "bucket"
)
SELECT
  "customer_id",
  'bm-sum' AS "metric_id", /* metric 'bm-sum' ('Sum metric'): SUM of 'tokens' */
  GREATEST_IGNORE_NULLS("bucket", CAST('2026-01-01 00:00:00' AS TIMESTAMPNTZ)) AS "window_start",
  LEAST_IGNORE_NULLS("bucket" + INTERVAL '1 DAY', CAST('2026-01-04 00:00:00' AS TIMESTAMPNTZ)) AS "window_end",
  CAST("m0_value" AS DECIMAL(38, 12)) AS "value"
FROM "usage"
ORDER BY
  "customer_id",
  "window_start",
  "metric_id"
