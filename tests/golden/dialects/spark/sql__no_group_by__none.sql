/* meterql usage: SQL metric 'no_group_by' (id 'bm-sql-no_group_by'); window none; group by ['total']; windows: every customer's (the query returns a row without events) */
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
    SELECT
      `c`.`id` AS `customer_id`,
      CAST(:start AS TIMESTAMP) AS `window_id`,
      CAST(:start AS TIMESTAMP) AS `window_start`,
      CAST(:end AS TIMESTAMP) AS `window_end`
    FROM `customers` AS `c`
  ) AS `w`
), `__mq_events` AS (
  SELECT
    `__mq_w`.`__mq_customer_id` AS `__mq_customer_id`,
    `__mq_w`.`__mq_window_id` AS `__mq_window_id`,
    `s`.`transaction_id`,
    `s`.`event_type`,
    `s`.`timestamp`,
    `s`.`p_tokens`
  FROM `__mq_source` AS `s`
  INNER JOIN `__mq_windows` AS `__mq_w`
    ON `s`.`customer_id` = `__mq_w`.`__mq_customer_id`
    AND `s`.`timestamp` >= `__mq_w`.`__mq_window_start`
    AND `s`.`timestamp` < `__mq_w`.`__mq_window_end`
)
SELECT
  `r`.`customer_id`,
  'bm-sql-no_group_by' AS `metric_id`,
  `r`.`window_start`,
  `r`.`window_end`,
  `r`.`total`,
  `r`.`value`
FROM (
  SELECT
    `__mq_w`.`__mq_customer_id` AS `customer_id`,
    `__mq_w`.`__mq_window_id` AS `window_id`,
    `__mq_w`.`__mq_window_start` AS `window_start`,
    `__mq_w`.`__mq_window_end` AS `window_end`,
    `__mq_q`.`__mq_c1` AS `total`,
    CASE
      WHEN CAST(`__mq_q`.`__mq_c0` AS STRING) IN ('NaN', 'Infinity', '-Infinity')
      THEN NULL
      ELSE CAST(`__mq_q`.`__mq_c0` AS DECIMAL(38, 12))
    END AS `value`
  FROM (
    SELECT
      COUNT(*) FILTER(WHERE
        NOT `events`.`__mq_customer_id` IS NULL) AS `value`,
      SUM(TRY_CAST(`events`.`p_tokens` AS DECIMAL(38, 12))) FILTER(WHERE
        NOT `events`.`__mq_customer_id` IS NULL) AS `total`,
      `__mq_w`.`__mq_customer_id` AS `__mq_customer_id`,
      `__mq_w`.`__mq_window_id` AS `__mq_window_id`
    FROM `__mq_windows` AS `__mq_w`
    LEFT JOIN (
      SELECT
        *
      FROM `__mq_events` AS `events`
      WHERE
        `events`.`event_type` = 'api_request'
    ) AS `events`
      ON `events`.`__mq_customer_id` = `__mq_w`.`__mq_customer_id`
      AND `events`.`__mq_window_id` = `__mq_w`.`__mq_window_id`
    GROUP BY
      `__mq_w`.`__mq_customer_id`,
      `__mq_w`.`__mq_window_id`
  ) AS `__mq_q`(`__mq_c0`, `__mq_c1`, `__mq_customer_id`, `__mq_window_id`)
  INNER JOIN `__mq_windows` AS `__mq_w`
    ON `__mq_q`.`__mq_customer_id` = `__mq_w`.`__mq_customer_id`
    AND `__mq_q`.`__mq_window_id` = `__mq_w`.`__mq_window_id`
) AS `r`
ORDER BY
  `customer_id`,
  `window_start`,
  `total`
