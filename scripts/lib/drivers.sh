# shellcheck shell=bash
# The client drivers tests/drivers.rs runs (psycopg 3, node-postgres, pgjdbc). Source it after
# scripts/lib/pg.sh (it uses log, die and apt_install); it defines functions and sets no shell
# options. Everything is installed only when missing, so a second run costs a few checks.
#
#   drivers_ensure_installed ROOT
#       Python  python3 and its venv module from Debian when missing; a virtualenv in
#               ROOT/target/drivers/venv holding tests/drivers/python/requirements.txt
#               (psycopg[binary], pinned; pip from PyPI)                  -> PGLATER_PYTHON
#       Node    nodejs and npm from Debian when node is missing; `npm ci` in
#               ROOT/tests/drivers/node from its package-lock.json (pg)    -> PGLATER_NODE
#       Java    default-jdk-headless from Debian when javac is missing; pgjdbc from Debian's
#               libpostgresql-jdbc-java when the jar is missing           -> PGLATER_JDBC_JAR
#   and exports the variables after the arrows (tests/drivers.rs reads them; it falls back to
#   the same locations when they are unset). PGLATER_JDBC_JAR may be set beforehand to use
#   another pgjdbc jar.

drivers_python() {
    local root=$1 venv py req stamp
    venv=$root/target/drivers/venv
    py=$venv/bin/python
    req=$root/tests/drivers/python/requirements.txt
    stamp=$venv/pglater-requirements.txt
    if [ -x "$py" ] && cmp -s "$req" "$stamp" && "$py" -c 'import psycopg' 2>/dev/null; then
        PGLATER_PYTHON=$py
        export PGLATER_PYTHON
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        # Debian splits venv/ensurepip out of python3
        apt_install python3-venv
    fi
    if [ ! -x "$py" ]; then
        log "python3 -m venv $venv"
        rm -rf "$venv"
        python3 -m venv "$venv" || die "python3 -m venv $venv failed"
    fi
    log "pip install -r tests/drivers/python/requirements.txt (into $venv)"
    "$py" -m pip install --quiet --disable-pip-version-check -r "$req" ||
        die "pip install of the Python driver test requirements failed"
    "$py" -c 'import psycopg' || die "psycopg still not importable from $py"
    cp "$req" "$stamp"
    PGLATER_PYTHON=$py
    export PGLATER_PYTHON
}

drivers_node() {
    local dir=$1/tests/drivers/node
    if ! command -v node >/dev/null 2>&1; then
        log "node not found: installing it from Debian packages"
        apt_install nodejs npm
    fi
    command -v npm >/dev/null 2>&1 || apt_install npm
    if [ ! -f "$dir/node_modules/pg/package.json" ] ||
        [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        log "npm ci in tests/drivers/node"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) ||
            die "npm ci in $dir failed"
    fi
    PGLATER_NODE=$(command -v node)
    export PGLATER_NODE
}

drivers_java() {
    if ! command -v javac >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
        log "javac not found: installing a JDK from Debian packages"
        apt_install default-jdk-headless
    fi
    PGLATER_JDBC_JAR=${PGLATER_JDBC_JAR:-/usr/share/java/postgresql.jar}
    if [ ! -f "$PGLATER_JDBC_JAR" ]; then
        log "pgjdbc not found at $PGLATER_JDBC_JAR: installing it from Debian packages"
        apt_install libpostgresql-jdbc-java
        [ -f "$PGLATER_JDBC_JAR" ] || die "$PGLATER_JDBC_JAR still missing after installing libpostgresql-jdbc-java"
    fi
    export PGLATER_JDBC_JAR
}

drivers_ensure_installed() {
    local root=$1
    drivers_python "$root"
    drivers_node "$root"
    drivers_java
    log "driver tests: python $PGLATER_PYTHON ($("$PGLATER_PYTHON" -c 'import psycopg; print("psycopg", psycopg.__version__)')), node $("$PGLATER_NODE" --version) (pg $(cd "$root/tests/drivers/node" && "$PGLATER_NODE" -p 'require("pg/package.json").version')), $(javac -version 2>&1), pgjdbc $PGLATER_JDBC_JAR"
}
