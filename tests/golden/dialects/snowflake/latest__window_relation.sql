/* meterql usage: metric 'bm-latest' ('Latest metric'): LATEST of 'tokens'; window relation */
WITH "events" AS (
  SELECT
    "e"."customer_id" AS "customer_id",
    "w"."window_id" AS "window_id",
    "e"."timestamp" AS "timestamp",
    "e"."transaction_id" AS "transaction_id",
    TRY_CAST("e"."p_tokens" AS DECIMAL(38, 12)) AS "m0_arg"
  FROM "events" AS "e"
  JOIN "windows" AS "w"
    ON "w"."customer_id" = "e"."customer_id"
    AND "w"."window_start" <= "e"."timestamp"
    AND "e"."timestamp" < "w"."window_end"
  WHERE
    NOT (
      REGEXP_INSTR("e"."p_tokens", '[^0-9.+-]') > 0
      OR NOT REGEXP_INSTR("e"."p_tokens", '^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)$') > 0
    )
    AND NOT REGEXP_INSTR("e"."p_tokens", '[.][0-9]{13}') > 0
    AND ABS(TRY_CAST("e"."p_tokens" AS DECIMAL(38, 12))) < CAST('1000000000000000000' AS DECIMAL(38, 12))
), "usage" AS (
  SELECT
    "customer_id",
    "window_id",
    ARRAY_AGG(CASE WHEN NOT "timestamp" IS NULL THEN "m0_arg" END) WITHIN GROUP (ORDER BY
      "timestamp" DESC NULLS LAST,
      "transaction_id" DESC NULLS LAST)[0] AS "m0_value" /* metric 'bm-latest' ('Latest metric'): LATEST of 'tokens' */
  FROM "events"
  GROUP BY
    "customer_id",
    "window_id"
)
SELECT
  "customer_id",
  'bm-latest' AS "metric_id", /* metric 'bm-latest' ('Latest metric'): LATEST of 'tokens' */
  "window_id",
  CAST("m0_value" AS DECIMAL(38, 12)) AS "value"
FROM "usage"
ORDER BY
  "customer_id",
  "window_id",
  "metric_id"
