#!/bin/bash
# Databases for Dagster, lakeFS (its KV store), MLflow and the Iceberg SQL catalog, each owned
# by its own role with its own password from the environment. Postgres's entrypoint runs (or
# sources) this once, on an empty data directory. Also mounted by deploy/k8s/postgres.yaml.
: "${DAGSTER_PG_PASSWORD:?}" "${LAKEFS_PG_PASSWORD:?}" "${MLFLOW_PG_PASSWORD:?}" "${ICEBERG_PG_PASSWORD:?}"

# psql's :'var' quotes each password as a literal; nothing is spliced into SQL text.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v dagster_pw="$DAGSTER_PG_PASSWORD" \
  -v lakefs_pw="$LAKEFS_PG_PASSWORD" \
  -v mlflow_pw="$MLFLOW_PG_PASSWORD" \
  -v iceberg_pw="$ICEBERG_PG_PASSWORD" <<'SQL'
CREATE ROLE dagster LOGIN PASSWORD :'dagster_pw';
CREATE DATABASE dagster OWNER dagster;
CREATE ROLE lakefs LOGIN PASSWORD :'lakefs_pw';
CREATE DATABASE lakefs OWNER lakefs;
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_pw';
CREATE DATABASE mlflow OWNER mlflow;
CREATE ROLE iceberg LOGIN PASSWORD :'iceberg_pw';
CREATE DATABASE iceberg OWNER iceberg;
SQL
