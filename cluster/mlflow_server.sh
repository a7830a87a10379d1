#!/usr/bin/env bash
# The MLflow tracking server for EMuLe searches on a cluster: runs and metrics in PostgreSQL, artifacts (spec,
# front table and plot, candidate configs) on shared storage, served through this server so that clients need no
# storage credentials.
#
# Lean settings: one worker, job execution off. About 5 s to answer /health and 480 MB, against about 13 s and
# 2.4-2.8 GB with mlflow's defaults (measured with mlflow 3.17 on 2 cores).
#
#   EMULE_MLFLOW_DB=postgresql+psycopg://USER:PASSWORD@DBHOST:5432/mlflow \
#   EMULE_MLFLOW_ARTIFACTS=s3://BUCKET/mlflow \
#   cluster/mlflow_server.sh [--host 0.0.0.0] [--port 5000] [--allowed-hosts mlflow.example.org] [mlflow server options]
#
# EMULE_MLFLOW_ARTIFACTS may be a shared folder instead (/shared/mlflow-artifacts). Searches log to the server with
# `tracking: {uri: http://THIS_HOST:5000}` in the spec, or `emule submit ... --tracking-uri http://THIS_HOST:5000`.
# MLflow answers only Host headers it allows (default: localhost and private IPs); behind a DNS name, pass
# --allowed-hosts.
# Needs: mlflow, psycopg[binary] (the PostgreSQL driver psycopg 3), boto3 for s3:// or google-cloud-storage for gs://.
# Run it under `setsid` (or a service manager) and stop its process group: mlflow starts a worker process.
set -euo pipefail
: "${EMULE_MLFLOW_DB:?set EMULE_MLFLOW_DB=postgresql+psycopg://USER:PASSWORD@HOST:5432/DB}"
: "${EMULE_MLFLOW_ARTIFACTS:?set EMULE_MLFLOW_ARTIFACTS=s3://BUCKET/PATH, gs://BUCKET/PATH or a shared folder}"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true
exec "${MLFLOW:-mlflow}" server \
  --backend-store-uri "$EMULE_MLFLOW_DB" \
  --serve-artifacts --artifacts-destination "$EMULE_MLFLOW_ARTIFACTS" \
  --workers 1 --host 127.0.0.1 --port 5000 \
  "$@"
