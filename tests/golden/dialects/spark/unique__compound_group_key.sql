/* meterql usage: metric 'bm-unique' ('Unique metric'): UNIQUE of 'tokens'; window none; group by ['region', 'model'] */
WITH `events` AS (
  SELECT
    `e`.`customer_id` AS `customer_id`,
    `e`.`p_region` AS `p_region`,
    `e`.`p_model` AS `p_model`,
    `e`.`p_tokens` AS `m0_arg`
  FROM `events` AS `e`
  WHERE
    `e`.`timestamp` >= CAST('2026-01-01 00:00:00' AS TIMESTAMP_NTZ)
    AND `e`.`timestamp` < CAST('2026-01-04 00:00:00' AS TIMESTAMP_NTZ)
    AND NOT `e`.`p_model` IS NULL
    AND `e`.`p_region` IN ('eu-west-1', 'us-east-1')
    AND NOT `e`.`p_user` IS NULL
    AND NOT `e`.`p_tokens` IS NULL
), `usage` AS (
  SELECT
    `customer_id`,
    `p_region`,
    `p_model`,
    COUNT(DISTINCT `m0_arg`) AS `m0_value` /* metric 'bm-unique' ('Unique metric'): UNIQUE of 'tokens' */
  FROM `events`
  GROUP BY
    `customer_id`,
    `p_region`,
    `p_model`
)
SELECT
  `customer_id`,
  'bm-unique' AS `metric_id`, /* metric 'bm-unique' ('Unique metric'): UNIQUE of 'tokens' */
  CAST('2026-01-01 00:00:00' AS TIMESTAMP_NTZ) AS `window_start`,
  CAST('2026-01-04 00:00:00' AS TIMESTAMP_NTZ) AS `window_end`,
  `p_region`,
  `p_model`,
  CAST(`m0_value` AS DECIMAL(38, 12)) AS `value`
FROM `usage`
ORDER BY
  `customer_id` NULLS LAST,
  `window_start` NULLS LAST,
  `p_region` NULLS LAST,
  `p_model` NULLS LAST,
  `metric_id` NULLS LAST
