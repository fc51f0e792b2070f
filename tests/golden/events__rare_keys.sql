SELECT
  "e"."transaction_id" AS "transaction_id",
  k.customer_id AS "customer_id",
  "e"."event_type" AS "event_type",
  "e"."timestamp" AS "timestamp",
  "e"."ingested_at" AS "ingested_at",
  "e"."batch_id" AS "batch_id",
  COALESCE("e"."p_it%27s", "e"."rare_properties_10"['it''s']) AS "p_it%27s",
  "e"."rare_properties_14"['only map'] AS "p_only%20map",
  CAST(NULL AS TEXT) AS "p_nowhere"
FROM READ_PARQUET(
  ['/data/a.parquet', '/data/b.parquet'],
  union_by_name = TRUE,
  hive_partitioning = FALSE
) AS e
INNER JOIN customer_keys AS k
  ON k.key = "e"."customer_id"
