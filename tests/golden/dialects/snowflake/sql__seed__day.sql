/* meterql usage: SQL metric 'seed' (id 'bm-sql-seed'); window day; group by ['region']; windows: those holding events of the customer */
WITH "__mq_source" AS (
  SELECT
    *
  FROM "events"
), "__mq_windows" AS (
  SELECT
    "w"."customer_id" AS "__mq_customer_id",
    "w"."window_id" AS "__mq_window_id",
    "w"."window_start" AS "__mq_window_start",
    "w"."window_end" AS "__mq_window_end"
  FROM (
    SELECT DISTINCT
      "e"."customer_id" AS "customer_id",
      GREATEST_IGNORE_NULLS(DATE_TRUNC('DAY', "e"."timestamp"), CAST(:start AS TIMESTAMP)) AS "window_id",
      GREATEST_IGNORE_NULLS(DATE_TRUNC('DAY', "e"."timestamp"), CAST(:start AS TIMESTAMP)) AS "window_start",
      LEAST_IGNORE_NULLS(DATE_TRUNC('DAY', "e"."timestamp") + INTERVAL '1 DAY', CAST(:end AS TIMESTAMP)) AS "window_end"
    FROM "events" AS "e"
    WHERE
      "e"."timestamp" >= CAST(:start AS TIMESTAMP)
      AND "e"."timestamp" < CAST(:end AS TIMESTAMP)
  ) AS "w"
), "__mq_events" AS (
  SELECT
    "__mq_w"."__mq_customer_id" AS "__mq_customer_id",
    "__mq_w"."__mq_window_id" AS "__mq_window_id",
    "s"."transaction_id",
    "s"."event_type",
    "s"."timestamp",
    "s"."p_user_id",
    "s"."p_region"
  FROM "__mq_source" AS "s"
  INNER JOIN "__mq_windows" AS "__mq_w"
    ON "s"."customer_id" = "__mq_w"."__mq_customer_id"
    AND "s"."timestamp" >= "__mq_w"."__mq_window_start"
    AND "s"."timestamp" < "__mq_w"."__mq_window_end"
)
SELECT
  "r"."customer_id",
  'bm-sql-seed' AS "metric_id",
  "r"."window_start",
  "r"."window_end",
  "r"."region",
  "r"."value"
FROM (
  SELECT
    "__mq_w"."__mq_customer_id" AS "customer_id",
    "__mq_w"."__mq_window_id" AS "window_id",
    "__mq_w"."__mq_window_start" AS "window_start",
    "__mq_w"."__mq_window_end" AS "window_end",
    "__mq_q"."__mq_c1" AS "region",
    CASE
      WHEN CAST("__mq_q"."__mq_c0" AS VARCHAR) IN ('NaN', 'inf', '-inf')
      THEN NULL
      ELSE CAST("__mq_q"."__mq_c0" AS DECIMAL(38, 12))
    END AS "value"
  FROM (
    SELECT
      COUNT(DISTINCT "events"."p_user_id") AS "value",
      "events"."p_region" AS "region",
      "events"."__mq_customer_id" AS "__mq_customer_id",
      "events"."__mq_window_id" AS "__mq_window_id"
    FROM "__mq_events" AS "events"
    WHERE
      "events"."event_type" = 'api_request'
    GROUP BY
      "events"."p_region",
      "events"."__mq_customer_id",
      "events"."__mq_window_id"
  ) AS "__mq_q"("__mq_c0", "__mq_c1", "__mq_customer_id", "__mq_window_id")
  INNER JOIN "__mq_windows" AS "__mq_w"
    ON "__mq_q"."__mq_customer_id" = "__mq_w"."__mq_customer_id"
    AND "__mq_q"."__mq_window_id" = "__mq_w"."__mq_window_id"
) AS "r"
ORDER BY
  "customer_id" NULLS FIRST,
  "window_start" NULLS FIRST,
  "region" NULLS FIRST
