/* meterql usage: metric 'bm-count' ('Count metric'): COUNT; metric 'bm-sum' ('Sum metric'): SUM of 'tokens'; metric 'bm-max' ('Max metric'): MAX of 'tokens'; window relation */
WITH "window_slices" AS MATERIALIZED (
  SELECT
    "w"."customer_id" AS "customer_id",
    "w"."window_id" AS "window_id",
    "s"."slice" AS "slice"
  FROM (
    SELECT
      "w"."customer_id" AS "customer_id",
      "w"."window_id" AS "window_id",
      "w"."window_start" AS "window_start",
      "w"."window_end" AS "window_end"
    FROM windows AS "w"
    WHERE
      CASE
        WHEN "w"."window_start" IN (
          CAST('2025-12-31 00:00:00' AS TIMESTAMP),
          CAST('2026-01-01 00:00:00' AS TIMESTAMP),
          CAST('2026-01-01 12:00:00' AS TIMESTAMP),
          CAST('2026-01-02 00:00:00' AS TIMESTAMP),
          CAST('2026-01-03 00:00:00' AS TIMESTAMP),
          CAST('2026-01-04 00:00:00' AS TIMESTAMP),
          CAST('2026-01-06 00:00:00' AS TIMESTAMP)
        )
        AND "w"."window_end" IN (
          CAST('2025-12-31 00:00:00' AS TIMESTAMP),
          CAST('2026-01-01 00:00:00' AS TIMESTAMP),
          CAST('2026-01-01 12:00:00' AS TIMESTAMP),
          CAST('2026-01-02 00:00:00' AS TIMESTAMP),
          CAST('2026-01-03 00:00:00' AS TIMESTAMP),
          CAST('2026-01-04 00:00:00' AS TIMESTAMP),
          CAST('2026-01-06 00:00:00' AS TIMESTAMP)
        )
        THEN TRUE
        ELSE ERROR(
          'meterql: usage window starts or ends off its slice boundaries: ' || CAST("w"."window_id" AS TEXT)
        )
      END
  ) AS "w"
  JOIN (VALUES
    (
      0,
      CAST('2025-12-31 00:00:00' AS TIMESTAMP),
      CAST('2026-01-01 00:00:00' AS TIMESTAMP)
    ),
    (
      1,
      CAST('2026-01-01 00:00:00' AS TIMESTAMP),
      CAST('2026-01-01 12:00:00' AS TIMESTAMP)
    ),
    (
      2,
      CAST('2026-01-01 12:00:00' AS TIMESTAMP),
      CAST('2026-01-02 00:00:00' AS TIMESTAMP)
    ),
    (
      3,
      CAST('2026-01-02 00:00:00' AS TIMESTAMP),
      CAST('2026-01-03 00:00:00' AS TIMESTAMP)
    ),
    (
      4,
      CAST('2026-01-03 00:00:00' AS TIMESTAMP),
      CAST('2026-01-04 00:00:00' AS TIMESTAMP)
    ),
    (
      5,
      CAST('2026-01-04 00:00:00' AS TIMESTAMP),
      CAST('2026-01-06 00:00:00' AS TIMESTAMP)
    )) AS "s"("slice", "slice_start", "slice_end")
    ON "w"."window_start" <= "s"."slice_start" AND "s"."slice_end" <= "w"."window_end"
), "events" AS (
  SELECT
    "e"."customer_id" AS "customer_id",
    "e"."mq_slice" AS "mq_slice",
    TRY_CAST("e"."p_tokens" AS BIGINT) AS "m1_arg",
    TRY_CAST("e"."p_tokens" AS BIGINT) AS "m2_arg"
  FROM (
    SELECT
      *,
      CASE
        WHEN "e"."timestamp" < CAST('2026-01-02 00:00:00' AS TIMESTAMP)
        THEN CASE
          WHEN "e"."timestamp" < CAST('2026-01-01 00:00:00' AS TIMESTAMP)
          THEN 0
          ELSE CASE
            WHEN "e"."timestamp" < CAST('2026-01-01 12:00:00' AS TIMESTAMP)
            THEN 1
            ELSE 2
          END
        END
        ELSE CASE
          WHEN "e"."timestamp" < CAST('2026-01-03 00:00:00' AS TIMESTAMP)
          THEN 3
          ELSE CASE
            WHEN "e"."timestamp" < CAST('2026-01-04 00:00:00' AS TIMESTAMP)
            THEN 4
            ELSE 5
          END
        END
      END AS "mq_slice"
    FROM events AS "e"
  ) AS "e"
  WHERE
    "e"."timestamp" >= CAST('2025-12-31 00:00:00' AS TIMESTAMP)
    AND "e"."timestamp" < CAST('2026-01-06 00:00:00' AS TIMESTAMP)
), "slice_usage" AS (
  SELECT
    "customer_id",
    "mq_slice",
    COUNT(*) AS "m0_value", /* metric 'bm-count' ('Count metric'): COUNT */
    SUM("m1_arg") AS "m1_value", /* metric 'bm-sum' ('Sum metric'): SUM of 'tokens' */
    MAX("m2_arg") AS "m2_value" /* metric 'bm-max' ('Max metric'): MAX of 'tokens' */
  FROM "events"
  GROUP BY
    "customer_id",
    "mq_slice"
), "usage" AS MATERIALIZED (
  SELECT
    "w"."window_id",
    SUM("p"."m0_value") AS "m0_value", /* metric 'bm-count' ('Count metric'): COUNT */
    SUM("p"."m1_value") AS "m1_value", /* metric 'bm-sum' ('Sum metric'): SUM of 'tokens' */
    MAX("p"."m2_value") AS "m2_value" /* metric 'bm-max' ('Max metric'): MAX of 'tokens' */
  FROM "slice_usage" AS "p"
  JOIN "window_slices" AS "w"
    ON "w"."customer_id" = "p"."customer_id" AND "w"."slice" = "p"."mq_slice"
  GROUP BY
    "w"."window_id"
)
SELECT
  'bm-count' AS "metric_id", /* metric 'bm-count' ('Count metric'): COUNT */
  "window_id",
  CAST("m0_value" AS DECIMAL(38, 12)) AS "value"
FROM "usage"
WHERE
  "m0_value" > 0
UNION ALL
SELECT
  'bm-sum' AS "metric_id", /* metric 'bm-sum' ('Sum metric'): SUM of 'tokens' */
  "window_id",
  CAST("m1_value" AS DECIMAL(38, 12)) AS "value"
FROM "usage"
WHERE
  NOT "m1_value" IS NULL
UNION ALL
SELECT
  'bm-max' AS "metric_id", /* metric 'bm-max' ('Max metric'): MAX of 'tokens' */
  "window_id",
  CAST("m2_value" AS DECIMAL(38, 12)) AS "value"
FROM "usage"
WHERE
  NOT "m2_value" IS NULL
ORDER BY
  "window_id",
  "metric_id"
