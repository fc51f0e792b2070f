/* meterql usage: metric 'bm-latest' ('Latest metric'): LATEST of 'tokens'; window relation */
WITH "events" AS (
  SELECT
    "e"."customer_id" AS "customer_id",
    "w"."window_id" AS "window_id",
    "e"."timestamp" AS "timestamp",
    "e"."transaction_id" AS "transaction_id",
    CAST("e"."p_tokens" AS Nullable(Decimal(38, 12))) AS "m0_arg"
  FROM "events" AS "e"
  JOIN "windows" AS "w"
    ON "w"."customer_id" = "e"."customer_id"
    AND "w"."window_start" <= "e"."timestamp"
    AND "e"."timestamp" < "w"."window_end"
  WHERE
    NOT (
      match("e"."p_tokens", '[^0-9.+-]')
      OR NOT match("e"."p_tokens", '^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)$')
    )
    AND NOT match("e"."p_tokens", '[.][0-9]{13}')
    AND ABS(CAST("e"."p_tokens" AS Nullable(Decimal(38, 12)))) < CAST('1000000000000000000' AS Nullable(Decimal(38, 12)))
), "usage" AS (
  SELECT
    "customer_id",
    "window_id",
    argMax("m0_arg", ("timestamp", "transaction_id")) AS "m0_value" /* metric 'bm-latest' ('Latest metric'): LATEST of 'tokens' */
  FROM "events"
  GROUP BY
    "customer_id",
    "window_id"
)
SELECT
  "customer_id",
  'bm-latest' AS "metric_id", /* metric 'bm-latest' ('Latest metric'): LATEST of 'tokens' */
  "window_id",
  CAST("m0_value" AS Nullable(Decimal(38, 12))) AS "value"
FROM "usage"
ORDER BY
  "customer_id",
  "window_id",
  "metric_id"
SETTINGS "join_use_nulls" = 1
