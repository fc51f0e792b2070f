/* meterql usage: metric 'bm-sum' ('Sum metric'): SUM of 'tokens'; window day */
WITH `events` AS (
  SELECT
    `e`.`customer_id` AS `customer_id`,
    TIMESTAMP_TRUNC(`e`.`timestamp`, DAY) AS `bucket`,
    SAFE_CAST(`e`.`p_tokens` AS BIGNUMERIC(38, 12)) AS `m0_arg`
  FROM `events` AS `e`
  WHERE
    `e`.`timestamp` >= CAST('2026-01-01 00:00:00' AS TIMESTAMP)
    AND `e`.`timestamp` < CAST('2026-01-04 00:00:00' AS TIMESTAMP)
    AND NOT (
      REGEXP_CONTAINS(`e`.`p_tokens`, '[^0-9.+-]')
      OR NOT REGEXP_CONTAINS(`e`.`p_tokens`, '^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)$')
    )
    AND NOT REGEXP_CONTAINS(`e`.`p_tokens`, '[.][0-9]{13}')
    AND ABS(SAFE_CAST(`e`.`p_tokens` AS BIGNUMERIC(38, 12))) < CAST('1000000000000000000' AS BIGNUMERIC)
), `usage` AS (
  SELECT
    `customer_id`,
    `bucket`,
    SUM(`m0_arg`) AS `m0_value` /* metric 'bm-sum' ('Sum metric'): SUM of 'tokens' */
  FROM `events`
  GROUP BY
    `customer_id`,
    `bucket`
)
SELECT
  `customer_id`,
  'bm-sum' AS `metric_id`, /* metric 'bm-sum' ('Sum metric'): SUM of 'tokens' */
  GREATEST(`bucket`, CAST('2026-01-01 00:00:00' AS TIMESTAMP)) AS `window_start`,
  LEAST(TIMESTAMP_ADD(`bucket`, INTERVAL 1 DAY), CAST('2026-01-04 00:00:00' AS TIMESTAMP)) AS `window_end`,
  CAST(`m0_value` AS BIGNUMERIC) AS `value`
FROM `usage`
ORDER BY
  `customer_id` NULLS LAST,
  `window_start` NULLS LAST,
  `metric_id` NULLS LAST
