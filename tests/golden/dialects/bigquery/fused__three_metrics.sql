/* meterql usage: metric 'bm-count' ('Count metric'): COUNT; metric 'bm-sum' ('Sum metric'): SUM of 'tokens'; metric 'bm-latest' ('Latest metric'): LATEST of 'tokens'; window relation */
WITH `events` AS (
  SELECT
    `e`.`customer_id` AS `customer_id`,
    `w`.`window_id` AS `window_id`,
    `e`.`timestamp` AS `timestamp`,
    `e`.`transaction_id` AS `transaction_id`,
    SAFE_CAST(`e`.`p_tokens` AS BIGNUMERIC(38, 12)) AS `m1_arg`,
    `e`.`event_type` IN ('embedding', 'llm_request')
    AND (
      NOT (
        REGEXP_CONTAINS(`e`.`p_tokens`, '[^0-9.+-]')
        OR NOT REGEXP_CONTAINS(`e`.`p_tokens`, '^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)$')
      )
      AND NOT REGEXP_CONTAINS(`e`.`p_tokens`, '[.][0-9]{13}')
      AND ABS(SAFE_CAST(`e`.`p_tokens` AS BIGNUMERIC(38, 12))) < CAST('1000000000000000000' AS BIGNUMERIC)
    ) AS `m1_match`, /* metric 'bm-sum' ('Sum metric'): SUM of 'tokens' */
    SAFE_CAST(`e`.`p_tokens` AS BIGNUMERIC(38, 12)) AS `m2_arg`,
    `e`.`event_type` IN ('embedding', 'llm_request')
    AND (
      NOT (
        REGEXP_CONTAINS(`e`.`p_tokens`, '[^0-9.+-]')
        OR NOT REGEXP_CONTAINS(`e`.`p_tokens`, '^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)$')
      )
      AND NOT REGEXP_CONTAINS(`e`.`p_tokens`, '[.][0-9]{13}')
      AND ABS(SAFE_CAST(`e`.`p_tokens` AS BIGNUMERIC(38, 12))) < CAST('1000000000000000000' AS BIGNUMERIC)
    ) AS `m2_match` /* metric 'bm-latest' ('Latest metric'): LATEST of 'tokens' */
  FROM `events` AS `e`
  JOIN `windows` AS `w`
    ON `w`.`customer_id` = `e`.`customer_id`
    AND `w`.`window_start` <= `e`.`timestamp`
    AND `e`.`timestamp` < `w`.`window_end`
), `usage` AS (
  SELECT
    `customer_id`,
    `window_id`,
    COUNT(*) AS `m0_value`, /* metric 'bm-count' ('Count metric'): COUNT */
    SUM(CASE WHEN `m1_match` THEN `m1_arg` END) AS `m1_value`, /* metric 'bm-sum' ('Sum metric'): SUM of 'tokens' */
    ARRAY_AGG(
      CASE WHEN NOT `timestamp` IS NULL THEN CASE WHEN `m2_match` THEN `m2_arg` END END IGNORE NULLS ORDER BY `timestamp` DESC, `transaction_id` DESC
      LIMIT 1
    )[SAFE_OFFSET(0)] AS `m2_value`, /* metric 'bm-latest' ('Latest metric'): LATEST of 'tokens' */
    COUNT(CASE WHEN `m2_match` THEN 1 END) AS `m2_events`
  FROM `events`
  GROUP BY
    `customer_id`,
    `window_id`
)
SELECT
  `customer_id`,
  'bm-count' AS `metric_id`, /* metric 'bm-count' ('Count metric'): COUNT */
  `window_id`,
  CAST(`m0_value` AS BIGNUMERIC) AS `value`
FROM `usage`
WHERE
  `m0_value` > 0
UNION ALL
SELECT
  `customer_id`,
  'bm-sum' AS `metric_id`, /* metric 'bm-sum' ('Sum metric'): SUM of 'tokens' */
  `window_id`,
  CAST(`m1_value` AS BIGNUMERIC) AS `value`
FROM `usage`
WHERE
  NOT `m1_value` IS NULL
UNION ALL
SELECT
  `customer_id`,
  'bm-latest' AS `metric_id`, /* metric 'bm-latest' ('Latest metric'): LATEST of 'tokens' */
  `window_id`,
  CAST(`m2_value` AS BIGNUMERIC) AS `value`
FROM `usage`
WHERE
  `m2_events` > 0
ORDER BY
  `customer_id` NULLS LAST,
  `window_id` NULLS LAST,
  `metric_id` NULLS LAST
