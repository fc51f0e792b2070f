/* meterql usage: metric 'bm-latest' ('Latest metric'): LATEST of 'tokens'; window none; group by ['region', 'model'] */
WITH "events" AS (
  SELECT
    "e"."customer_id" AS "customer_id",
    "e"."p_region" AS "p_region",
    "e"."p_model" AS "p_model",
    "e"."timestamp" AS "timestamp",
    "e"."transaction_id" AS "transaction_id",
    TRY_CAST("e"."p_tokens" AS DECIMAL(38, 12)) AS "m0_arg"
  FROM events AS "e"
  WHERE
    "e"."timestamp" >= CAST('2026-01-01 00:00:00' AS TIMESTAMP)
    AND "e"."timestamp" < CAST('2026-01-04 00:00:00' AS TIMESTAMP)
    AND NOT "e"."p_model" IS NULL
    AND "e"."p_region" IN ('eu-west-1', 'us-east-1')
    AND NOT "e"."p_user" IS NULL
    AND NOT "e"."p_tokens" GLOB '*[!0-9.+-]*'
    AND NOT "e"."p_tokens" GLOB '*.[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]*'
    AND ABS(TRY_CAST("e"."p_tokens" AS DECIMAL(38, 12))) < CAST('1000000000000000000' AS DECIMAL(38, 12))
), "usage" AS (
  SELECT
    "customer_id",
    "p_region",
    "p_model",
    ARG_MAX("m0_arg", {'timestamp': "timestamp", 'transaction_id': "transaction_id"}) AS "m0_value" /* metric 'bm-latest' ('Latest metric'): LATEST of 'tokens' */
  FROM "events"
  GROUP BY
    "customer_id",
    "p_region",
    "p_model"
)
SELECT
  "customer_id",
  'bm-latest' AS "metric_id", /* metric 'bm-latest' ('Latest metric'): LATEST of 'tokens' */
  CAST('2026-01-01 00:00:00' AS TIMESTAMP) AS "window_start",
  CAST('2026-01-04 00:00:00' AS TIMESTAMP) AS "window_end",
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
