#!/usr/bin/env bash
# Installs (if needed) and starts a local PostgreSQL server for the task-log tests, creates the
# role and database, and prints the SQLAlchemy URL to use (export it as O2O_TEST_POSTGRES_URL).
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$version main$"; then
  pg_createcluster "$version" main >&2
fi
pg_ctlcluster "$version" main start >&2 || true
for _ in $(seq 1 30); do
  if su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1; then break; fi
  sleep 1
done
su postgres -c "psql -qAtc \"do \\\$\\\$ begin if not exists (select from pg_roles where rolname='o2o') then create role o2o login password 'o2o' createdb; end if; end \\\$\\\$;\"" >&2
if ! su postgres -c "psql -qAtc \"select 1 from pg_database where datname='o2o_test'\"" | grep -q 1; then
  su postgres -c "createdb -O o2o o2o_test" >&2
fi
echo "postgresql+psycopg://o2o:o2o@127.0.0.1:5432/o2o_test"
