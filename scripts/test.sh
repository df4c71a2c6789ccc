#!/usr/bin/env bash
# Run pglater's whole test suite.
#
# The integration tests start their own PostgreSQL 15 (as the `postgres` OS user when run as
# root) and call psql and openssl, so this installs what is missing first: Debian's
# postgresql + postgresql-client when initdb is not found (PATH or /usr/lib/postgresql/*/bin),
# and openssl. tests/drivers.rs runs programs with real client drivers; scripts/lib/drivers.sh
# installs them when missing (psycopg[binary] into a venv under target/drivers, node-postgres
# with npm ci in tests/drivers/node, a JDK and pgjdbc from Debian) and exports their locations
# (PGLATER_PYTHON, PGLATER_NODE, PGLATER_JDBC_JAR). It puts PostgreSQL's bin directory first
# on PATH, then runs
# `cargo test --all-targets --no-fail-fast` (every test binary runs even after a failure).
# Debian's pgbouncer is installed too when missing (tests/pgbouncer.rs runs pglater in front
# of it; PGLATER_PGBOUNCER tells the tests where it is).
# Extra arguments go to cargo test, e.g.
#   scripts/test.sh relay            # only tests whose name contains "relay"
#   scripts/test.sh -- --nocapture
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/pg.sh
. "$root/scripts/lib/pg.sh"
# shellcheck source=scripts/lib/drivers.sh
. "$root/scripts/lib/drivers.sh"

if [ "$(id -u)" -ne 0 ]; then
    log "warning: the integration tests start PostgreSQL with 'runuser -u postgres', which needs root"
fi
pg_ensure_installed
pgbouncer_ensure_installed
command -v openssl >/dev/null 2>&1 || apt_install openssl ca-certificates
drivers_ensure_installed "$root"

log "PostgreSQL binaries: $PG_BINDIR ($("$PG_BINDIR/postgres" --version))"
cd "$root"
log "cargo test --all-targets --no-fail-fast $*"
cargo test --all-targets --no-fail-fast "$@"
