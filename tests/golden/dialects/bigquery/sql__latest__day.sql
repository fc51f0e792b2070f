/* meterql usage: SQL metric 'latest' (id 'bm-sql-latest'); window day; group by ['model']; windows: those holding events of the customer */
WITH `__mq_source` AS (
  SELECT
    *
  FROM `events`
), `__mq_windows` AS (
  SELECT
    `w`.`customer_id` AS `__mq_customer_id`,
    `w`.`window_id` AS `__mq_window_id`,
    `w`.`window_start` AS `__mq_window_start`,
    `w`.`window_end` AS `__mq_window_end`
  FROM (
    SELECT DISTINCT
      `e`.`customer_id` AS `customer_id`,
      GREATEST(TIMESTAMP_TRUNC(`e`.`timestamp`, DAY), CAST(@start AS TIMESTAMP)) AS `window_id`,
      GREATEST(TIMESTAMP_TRUNC(`e`.`timestamp`, DAY), CAST(@start AS TIMESTAMP)) AS `window_start`,
      LEAST(
        TIMESTAMP_ADD(TIMESTAMP_TRUNC(`e`.`timestamp`, DAY), INTERVAL 1 DAY),
        CAST(@end AS TIMESTAMP)
      ) AS `window_end`
    FROM `events` AS `e`
    WHERE
      `e`.`timestamp` >= CAST(@start AS TIMESTAMP)
      AND `e`.`timestamp` < CAST(@end AS TIMESTAMP)
  ) AS `w`
), `__mq_events` AS (
  SELECT
    `__mq_w`.`__mq_customer_id` AS `__mq_customer_id`,
    `__mq_w`.`__mq_window_id` AS `__mq_window_id`,
    `s`.`transaction_id`,
    `s`.`event_type`,
    `s`.`timestamp`,
    `s`.`p_tokens`,
    `s`.`p_model`
  FROM `__mq_source` AS `s`
  INNER JOIN `__mq_windows` AS `__mq_w`
    ON `s`.`customer_id` = `__mq_w`.`__mq_customer_id`
    AND `s`.`timestamp` >= `__mq_w`.`__mq_window_start`
    AND `s`.`timestamp` < `__mq_w`.`__mq_window_end`
)
SELECT
  `r`.`customer_id`,
  'bm-sql-latest' AS `metric_id`,
  `r`.`window_start`,
  `r`.`window_end`,
  `r`.`model`,
  `r`.`value`
FROM (
  SELECT
    `__mq_w`.`__mq_customer_id` AS `customer_id`,
    `__mq_w`.`__mq_window_id` AS `window_id`,
    `__mq_w`.`__mq_window_start` AS `window_start`,
    `__mq_w`.`__mq_window_end` AS `window_end`,
    `__mq_q`.`__mq_c1` AS `model`,
    CASE
      WHEN CAST(`__mq_q`.`__mq_c0` AS STRING) IN ('nan', 'inf', '-inf')
      THEN NULL
      ELSE CAST(`__mq_q`.`__mq_c0` AS BIGNUMERIC)
    END AS `value`
  FROM (
    SELECT
      ARRAY_AGG(
        CASE
          WHEN NOT `events`.`timestamp` IS NULL
          THEN SAFE_CAST(`events`.`p_tokens` AS BIGNUMERIC(38, 12))
        END IGNORE NULLS ORDER BY `events`.`timestamp` DESC, `events`.`transaction_id` DESC
        LIMIT 1
      )[SAFE_OFFSET(0)] AS `__mq_c0`,
      `events`.`p_model` AS `__mq_c1`,
      `events`.`__mq_customer_id` AS `__mq_customer_id`,
      `events`.`__mq_window_id` AS `__mq_window_id`
    FROM `__mq_events` AS `events`
    WHERE
      `events`.`event_type` = 'api_request' AND NOT `events`.`p_model` IS NULL
    GROUP BY
      `events`.`p_model`,
      `events`.`__mq_customer_id`,
      `events`.`__mq_window_id`
  ) AS `__mq_q`
  INNER JOIN `__mq_windows` AS `__mq_w`
    ON `__mq_q`.`__mq_customer_id` = `__mq_w`.`__mq_customer_id`
    AND `__mq_q`.`__mq_window_id` = `__mq_w`.`__mq_window_id`
) AS `r`
ORDER BY
  `customer_id`,
  `window_start`,
  `model`
