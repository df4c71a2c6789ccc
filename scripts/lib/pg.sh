# shellcheck shell=bash
# Shared helpers for scripts/quickstart.sh, scripts/test.sh and benches/*.sh.
# Source it from bash; it defines functions and sets no shell options.
#
#   pg_ensure_installed     install PostgreSQL (server + client) from Debian packages when
#                           initdb is missing; export PG_BINDIR and put it first on PATH
#   pgbouncer_ensure_installed
#                           install Debian's pgbouncer when it is missing (tests/pgbouncer.rs
#                           runs pglater in front of it); export PGLATER_PGBOUNCER
#   pg_free_port            print a TCP port nobody listens on at 127.0.0.1
#   pg_cluster_start DIR PORT [SETTING...]
#                           initdb + start a throwaway cluster in DIR (trust auth, listens on
#                           127.0.0.1:PORT and on a Unix socket in DIR); SETTINGs such as
#                           "shared_buffers = 256MB" are appended to postgresql.conf
#   pg_cluster_stop DIR     stop that cluster (fast shutdown); does not remove DIR
#   wait_for_port PORT SECS [PID]
#                           wait until 127.0.0.1:PORT accepts connections (fails early if PID dies)
#   stop_pid PID [SECS]     SIGTERM, wait up to SECS (default 10), then SIGKILL
#
# For the benchmarks (they set `root` to the repository first; the helpers set the globals
# named in brackets):
#   bench_build             cargo build --release unless NO_BUILD=1; the binary is $PGLATER_BIN
#                           or target/release/pglater, and must exist  [pglater_bin]
#   bench_binary_note       "given binary" ($PGLATER_BIN) or "commit <short hash>"
#   bench_workdir TEMPLATE  mktemp -d TEMPLATE (owned by postgres as root); on exit stops pglater,
#                           then whatever the script's bench_stop_extra stops (if it defines one),
#                           then the cluster in $work/pg, and removes the directory unless
#                           KEEP_DIR=1  [work, pglater_pid]
#   bench_pg_start [SETTING...]
#                           pg_cluster_start in $work/pg on a free port; PGUSER=postgres,
#                           PGDATABASE=postgres, PGHOST=127.0.0.1 exported, other PG* unset
#                           [pg_port]
#   bench_pglater_start [ARG...]
#                           start pglater in front of it (--upstream; ARGs such as --auth trust)
#                           on a free port, log in $work/pglater.log  [pglater_port, pglater_pid]
#
# As root, initdb/postgres run as the `postgres` OS user (they refuse to run as root);
# as any other user they run as that user.

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

_PG_APT_UPDATED=
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found: install $* with your system's package manager"
    if [ -z "$_PG_APT_UPDATED" ]; then
        log "apt-get update"
        as_root apt-get update -qq
        _PG_APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@"
}

# Print the directory holding initdb, pg_ctl and postgres, or fail.
# Looks at $PG_BINDIR, then PATH (following symlinks), then /usr/lib/postgresql/*/bin (newest).
pg_find_bindir() {
    local d exe
    if [ -n "${PG_BINDIR:-}" ] && [ -x "$PG_BINDIR/initdb" ]; then
        printf '%s\n' "$PG_BINDIR"
        return 0
    fi
    if exe=$(command -v initdb 2>/dev/null); then
        d=$(dirname "$(readlink -f "$exe")")
        if [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
            printf '%s\n' "$d"
            return 0
        fi
    fi
    d=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null |
        sort -V | tail -n 1)
    if [ -n "$d" ]; then
        printf '%s\n' "$(dirname "$d")"
        return 0
    fi
    return 1
}

# Install PostgreSQL server and client when missing; export PG_BINDIR and prepend it to PATH.
pg_ensure_installed() {
    local bindir
    if ! bindir=$(pg_find_bindir); then
        log "PostgreSQL server (initdb) not found: installing it from Debian packages"
        apt_install postgresql postgresql-client
        bindir=$(pg_find_bindir) || die "initdb still not found after installing postgresql"
    fi
    if [ ! -x "$bindir/psql" ]; then
        apt_install postgresql-client
    fi
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        # Debian's package creates this user; a hand-made install may not have.
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
    PG_BINDIR=$bindir
    export PG_BINDIR
    case ":$PATH:" in
    *":$bindir:"*) ;;
    *) PATH="$bindir:$PATH" ;;
    esac
    export PATH
}

# Print the path of pgbouncer (PATH, then Debian's /usr/sbin), or fail.
pgbouncer_find() {
    local exe
    if exe=$(command -v pgbouncer 2>/dev/null); then
        printf '%s\n' "$exe"
    elif [ -x /usr/sbin/pgbouncer ]; then
        printf '%s\n' /usr/sbin/pgbouncer
    else
        return 1
    fi
}

# Install PgBouncer from Debian's package when missing (its service is not needed: the tests
# start their own, as the postgres OS user); export PGLATER_PGBOUNCER.
pgbouncer_ensure_installed() {
    local exe
    if ! exe=$(pgbouncer_find); then
        log "pgbouncer not found: installing it from Debian packages"
        apt_install pgbouncer
        exe=$(pgbouncer_find) || die "pgbouncer still not found after installing it"
    fi
    PGLATER_PGBOUNCER=$exe
    export PGLATER_PGBOUNCER
}

# Run a command as the PostgreSQL OS user (root) or as ourselves (anyone else).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

pg_free_port() {
    local p _
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 30000))
        if ! (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    die "no free TCP port found on 127.0.0.1"
}

pg_cluster_start() {
    local dir=$1 port=$2 setting
    shift 2
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
    fi
    log "initdb $dir/data (superuser postgres, trust auth, loopback only)"
    as_pg "$PG_BINDIR/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C \
        --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        die "initdb failed"
    }
    {
        echo "# added by pglater's scripts/lib/pg.sh"
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$dir'"
        for setting in "$@"; do
            echo "$setting"
        done
    } | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
    log "starting PostgreSQL on 127.0.0.1:$port (log: $dir/postgres.log)"
    as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null || {
        cat "$dir/postgres.log" >&2 || true
        die "PostgreSQL did not start"
    }
}

pg_cluster_stop() {
    local dir=$1
    if [ -f "$dir/data/postmaster.pid" ]; then
        log "stopping PostgreSQL in $dir"
        as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null || true
    fi
}

wait_for_port() {
    local port=$1 secs=$2 pid=${3:-} i
    for ((i = 0; i < secs * 10; i++)); do
        if (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

stop_pid() {
    local pid=$1 secs=${2:-10} i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

bench_build() {
    # shellcheck disable=SC2154 # root is set by the benchmark script
    cd "$root" || die "cannot cd to $root"
    if [ "${NO_BUILD:-0}" != 1 ]; then
        log "cargo build --release"
        cargo build --release
    fi
    pglater_bin=${PGLATER_BIN:-$root/target/release/pglater}
    [ -x "$pglater_bin" ] || die "$pglater_bin not found (cargo build --release)"
}

bench_binary_note() {
    if [ -n "${PGLATER_BIN:-}" ]; then echo "given binary"; else
        echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"; fi
}

# shellcheck disable=SC2317 # called through the trap
bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "${pglater_pid:-}" ]; then stop_pid "$pglater_pid" 10; fi
    if declare -F bench_stop_extra >/dev/null; then bench_stop_extra; fi
    pg_cluster_stop "$work/pg"
    if [ "${KEEP_DIR:-0}" = 1 ]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}

bench_workdir() {
    work=$(mktemp -d "$1")
    pglater_pid=
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$work"; fi
}

bench_pg_start() {
    pg_port=$(pg_free_port)
    pg_cluster_start "$work/pg" "$pg_port" "$@"
    export PGUSER=postgres PGDATABASE=postgres PGHOST=127.0.0.1
    unset PGPASSWORD PGSERVICE PGOPTIONS PGSSLMODE || true
}

bench_pglater_start() {
    pglater_port=$(pg_free_port)
    log "starting pglater on 127.0.0.1:$pglater_port $* (log: $work/pglater.log)"
    "$pglater_bin" --listen "127.0.0.1:$pglater_port" --upstream "127.0.0.1:$pg_port" \
        "$@" >"$work/pglater.log" 2>&1 &
    pglater_pid=$!
    wait_for_port "$pglater_port" 60 "$pglater_pid" || {
        cat "$work/pglater.log" >&2
        die "pglater did not start"
    }
}
