#!/bin/sh
# run-stack.sh — the whole jobgate stack on this machine, for trying it out (`make run`):
#   a private redis-server on ./run/redis.sock (no TCP port, no persistence),
#   every built web program under spawn-fcgi on ./run/<program>.sock,
#   a jobgate-worker for the demo job types (queue "default", concurrency 4),
#   nginx on 127.0.0.1:${PORT:-8080} with a generated ./run/nginx.conf that includes the shipped
#   nginx/jobgate.conf unchanged and serves deploy/www/ at / (FRONT=apache: Apache instead, with
#   ./run/apache2.conf from deploy/apache-conf.sh including the shipped apache/jobgate.conf).
# Logs go to ./run/*.log. Ctrl-C (or SIGTERM to this script) stops everything.
# REDIS_CLUSTER=3: a private Redis Cluster instead of the one Redis, 3 masters + 3 replicas on
# 127.0.0.1:${REDIS_CLUSTER_PORT:-7000}..+5 (and their bus ports +10000), files under
# ./run/cluster/, no persistence. REDIS_URL=...: an existing Redis or cluster, none started.
#
# Environment: PORT (8080), FRONT (nginx or apache), JOBGATE_BUILD (build), JOBGATE_RUN_DIR (./run),
# THREADS (--threads for every web program; unset: each program's default), CONCURRENCY (4),
# and any JOBGATE_* setting, which the programs and the worker see.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/${JOBGATE_BUILD:-build}"
RUN="${JOBGATE_RUN_DIR:-$ROOT/run}"
PORT="${PORT:-8080}"
THREADS="${THREADS:-}"
CONCURRENCY="${CONCURRENCY:-4}"
WEB_PROGRAMS="submit status logs cache admin"
DEMO_TYPES="echo sleep lines fail flaky"
FRONT="${FRONT:-nginx}"

say() { printf '%s\n' "run-stack: $*"; }
die() { printf '%s\n' "run-stack: $*" >&2; exit 1; }

case "$FRONT" in
    nginx) FRONT_BIN=nginx ;;
    apache) FRONT_BIN=apache2 ;;
    *) die "FRONT must be nginx or apache, not $FRONT" ;;
esac
PATH="$PATH:/usr/sbin"
for tool in redis-server redis-cli spawn-fcgi $FRONT_BIN; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (make deps)"
done
[ -x "$BUILD/jobgate-submit" ] || die "$BUILD/jobgate-submit is not built (make)"

mkdir -p "$RUN" "$RUN/nginx-tmp"
if [ -f "$RUN/stack.pid" ] && kill -0 "$(cat "$RUN/stack.pid")" 2>/dev/null; then
    die "a stack is already running from $RUN (pid $(cat "$RUN/stack.pid")); stop it first"
fi
echo $$ > "$RUN/stack.pid"

PIDS=""          # every process we started, in start order
CLUSTER_PIDS=""  # the cluster's nodes (REDIS_CLUSTER=3), stopped last
STOPPING=0

# stop_pids PID...: SIGTERM to each, up to 10 s for all to exit, then SIGKILL to those left.
stop_pids() {
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    i=0
    while [ $i -lt 100 ]; do
        alive=""
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
        [ -z "$alive" ] && break
        sleep 0.1
        i=$((i + 1))
    done
    for p in "$@"; do
        if kill -0 "$p" 2>/dev/null; then
            say "pid $p did not stop in 10 s: killing it"
            kill -KILL "$p" 2>/dev/null || true
        fi
        wait "$p" 2>/dev/null || true
    done
}

# Stops everything: the programs, the worker and the front in reverse start order, then Redis.
cleanup() {
    [ "$STOPPING" -eq 1 ] && return
    STOPPING=1
    trap '' INT TERM HUP
    say "stopping"
    # everything but Redis first, newest first, so that the programs and the worker finish
    # their last requests and reports with Redis still there; then Redis
    rev=""
    for p in $PIDS; do
        case " ${PID_redis:-} $CLUSTER_PIDS " in *" $p "*) ;; *) rev="$p $rev" ;; esac
    done
    stop_pids $rev
    [ -n "${PID_redis:-}" ] && stop_pids "$PID_redis"
    [ -n "$CLUSTER_PIDS" ] && stop_pids $CLUSTER_PIDS
    rm -f "$RUN"/*.sock "$RUN/stack.pid" "$RUN/nginx.pid" "$RUN/apache.pid"
    say "stopped"
}
trap 'cleanup' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# start NAME LOGFILE COMMAND...: starts a process in the background, logging to LOGFILE.
start() {
    name=$1 log=$2
    shift 2
    printf '# %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >> "$log"
    "$@" >> "$log" 2>&1 < /dev/null &
    PIDS="$PIDS $!"
    eval "PID_$name=$!"
}

# wait_for WHAT COMMAND...: up to 10 s for COMMAND to succeed.
wait_for() {
    what=$1
    shift
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -ge 100 ] && die "$what did not come up in 10 s (see $RUN/*.log)"
        sleep 0.1
    done
}

# ---- Redis -----------------------------------------------------------------------------------
rm -f "$RUN"/*.sock
# the settings jobgate recommends for a site's Redis (README, "Redis"; docs/redis.md, "The job
# log"): a job log's first stream node takes 512 bytes, not Redis 7.0's 4,096 (tests/harness.py
# REDIS_RECOMMENDED gives the same to the tests' and benchmarks' Redis)
REDIS_RECOMMENDED="--stream-node-max-bytes 512"
if [ -n "${REDIS_URL:-}" ]; then
    say "using the Redis of REDIS_URL (none started)"
elif [ -n "${REDIS_CLUSTER:-}" ]; then
    [ "$REDIS_CLUSTER" = 3 ] || die "REDIS_CLUSTER must be 3 (3 masters, 3 replicas), not $REDIS_CLUSTER"
    base="${REDIS_CLUSTER_PORT:-7000}"
    rm -rf "$RUN/cluster"   # no persistence: a new cluster each time
    seeds=""
    for i in 0 1 2 3 4 5; do
        port=$((base + i))
        mkdir -p "$RUN/cluster/$port"
        # shellcheck disable=SC2086   # REDIS_RECOMMENDED: several words
        start "redis$i" "$RUN/cluster/$port/redis.log" setsid redis-server --port "$port" \
            --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-node-timeout 2000 --save "" --appendonly no --dir "$RUN/cluster/$port" \
            --daemonize no $REDIS_RECOMMENDED
        eval "CLUSTER_PIDS=\"\$CLUSTER_PIDS \$PID_redis$i\""
        seeds="$seeds${seeds:+,}127.0.0.1:$port"
    done
    for i in 0 1 2 3 4 5; do
        wait_for "redis-server on port $((base + i))" redis-cli -p $((base + i)) ping
    done
    # shellcheck disable=SC2046
    redis-cli --cluster create $(echo "$seeds" | tr ',' ' ') --cluster-replicas 1 \
        --cluster-yes >> "$RUN/cluster/create.log" 2>&1 ||
        die "redis-cli --cluster create failed (see $RUN/cluster/create.log)"
    cluster_ok() {
        for i in 0 1 2 3 4 5; do
            redis-cli -p $((base + i)) cluster info | grep -q 'cluster_state:ok' || return 1
        done
    }
    wait_for "the cluster" cluster_ok
    REDIS_URL="redis+cluster://$seeds"
else
    # in a session of its own, so that Ctrl-C (sent to the terminal's whole process group)
    # reaches only this script, which stops Redis after the programs and the worker have
    # finished with it
    # shellcheck disable=SC2086   # REDIS_RECOMMENDED: several words
    start redis "$RUN/redis.log" setsid redis-server --port 0 --unixsocket "$RUN/redis.sock" \
        --unixsocketperm 700 --save "" --appendonly no --dir "$RUN" --daemonize no \
        $REDIS_RECOMMENDED
    wait_for "redis-server" redis-cli -s "$RUN/redis.sock" ping
    REDIS_URL="unix://$RUN/redis.sock?db=0"
fi
export REDIS_URL

# ---- The web programs ------------------------------------------------------------------------
started=""
# Apache's children run as www-data when it is started as root: the sockets are theirs then.
SOCKET_OWNER=""
[ "$FRONT" = apache ] && [ "$(id -u)" -eq 0 ] && SOCKET_OWNER="-U www-data"
for p in $WEB_PROGRAMS; do
    [ -x "$BUILD/jobgate-$p" ] || continue
    # shellcheck disable=SC2086
    start "$p" "$RUN/$p.log" spawn-fcgi -n -s "$RUN/$p.sock" -M 0660 $SOCKET_OWNER -- \
        "$BUILD/jobgate-$p" ${THREADS:+--threads "$THREADS"}
    started="$started $p"
done
for p in $started; do
    wait_for "jobgate-$p" test -S "$RUN/$p.sock"
done

# ---- The worker ------------------------------------------------------------------------------
if [ -x "$BUILD/jobgate-worker" ]; then
    set -- "$BUILD/jobgate-worker" --queue default --concurrency "$CONCURRENCY" --grace 5
    for t in $DEMO_TYPES; do
        set -- "$@" --type "$t=$ROOT/deploy/examples/jobs/$t.sh"
    done
    start worker "$RUN/worker.log" "$@"
else
    say "warning: $BUILD/jobgate-worker is not built: jobs will stay queued"
fi

# ---- The front end: nginx, or Apache with FRONT=apache -----------------------------------------
if [ "$FRONT" = apache ]; then
    sh "$ROOT/deploy/apache-conf.sh" "$RUN" "$PORT" > "$RUN/apache2.conf"
    start front "$RUN/apache.log" apache2 -D FOREGROUND -f "$RUN/apache2.conf"
else
# nginx's workers run as "nobody" when the master is root, and could not reach the sockets in
# ./run: run them as root then (this is a local demo stack, listening on loopback only).
USER_LINE=""
[ "$(id -u)" -eq 0 ] && USER_LINE="user root;"
MIME=""
[ -f /etc/nginx/mime.types ] && MIME="include /etc/nginx/mime.types;"
# the shipped upstreams, with their one setting, the socket directory, set to ./run
sed "s|/run/jobgate/|$RUN/|" "$ROOT/nginx/jobgate-upstreams.conf" > "$RUN/jobgate-upstreams.conf"
cat > "$RUN/nginx.conf" <<EOF
# generated by deploy/run-stack.sh
daemon off;
master_process on;
worker_processes 2;
worker_rlimit_nofile 16384;
pid $RUN/nginx.pid;
error_log $RUN/nginx-error.log info;
$USER_LINE
events { worker_connections 4096; }

http {
    $MIME
    default_type application/octet-stream;
    client_body_temp_path $RUN/nginx-tmp/body;
    fastcgi_temp_path $RUN/nginx-tmp/fastcgi;
    proxy_temp_path $RUN/nginx-tmp/proxy;
    uwsgi_temp_path $RUN/nginx-tmp/uwsgi;
    scgi_temp_path $RUN/nginx-tmp/scgi;

    include $RUN/jobgate-upstreams.conf;
    access_log $RUN/nginx-access.log jobgate;   # the shipped format: no ?access_token=

    server {
        listen 127.0.0.1:$PORT;
        server_name localhost;

        include $ROOT/nginx/jobgate.conf;

        location / {
            root $ROOT/deploy/www;
            index index.html;
        }
    }
}
EOF
start front "$RUN/nginx.log" nginx -p "$RUN/" -c "$RUN/nginx.conf" -e "$RUN/nginx-error.log"
fi
i=0
until curl -s -o /dev/null "http://127.0.0.1:$PORT/"; do
    if ! kill -0 "$PID_front" 2>/dev/null; then
        tail -n 5 "$RUN/$FRONT-error.log" "$RUN/$FRONT.log" >&2 || true
        die "$FRONT did not start (is port $PORT free? set PORT=...)"
    fi
    i=$((i + 1))
    [ $i -ge 100 ] && die "$FRONT did not answer on 127.0.0.1:$PORT in 10 s"
    sleep 0.1
done

URL="http://127.0.0.1:$PORT"
cat <<EOF

  jobgate is running: $URL/        ($FRONT; programs:$started; logs in ./run/*.log)
  the dashboard:      $URL/dashboard/

  Try:
    curl -s -X POST $URL/api/jobs -H 'Content-Type: application/json' \\
         -d '{"type":"sleep","payload":{"ms":3000,"steps":3}}'
    curl -s $URL/api/jobs/<id>
    curl -s -H 'If-None-Match: "1"' '$URL/api/jobs/<id>?wait=30'     # long poll
    curl -s -X POST $URL/api/jobs/<id>/cancel
    curl -s $URL/api/stats                                          # queues, workers
    curl -s '$URL/api/jobs?limit=10'                                 # the newest jobs

  Attach a worker of your own (any language; docs/redis.md, "Worker protocol"):
    REDIS_URL='$REDIS_URL' JOBGATE_KEY_PREFIX=${JOBGATE_KEY_PREFIX:-jobgate}

  Ctrl-C stops everything.

EOF

# ---- Watch ------------------------------------------------------------------------------------
# `sleep & wait` so that a signal is handled at once; a process that dies stops the stack.
while :; do
    for p in $PIDS; do
        if ! kill -0 "$p" 2>/dev/null; then
            # Ctrl-C reaches every process of the terminal's group at once: give our own
            # SIGINT a moment to arrive before calling this an unexpected exit
            sleep 0.5 &
            wait $! 2>/dev/null || true
            say "process $p exited; stopping the stack (see $RUN/*.log)"
            exit 1
        fi
    done
    sleep 1 &
    wait $! 2>/dev/null || true
done
