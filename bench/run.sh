#!/bin/sh
# run.sh — `make bench`: every benchmark part in turn, each on its own private stack on free
# loopback ports, each bounded in time (killed, and its stack stopped, past its limit), each
# printing its own table. A part that fails or runs out of time is reported and the next runs.
#   http    bench/bench.py: wrk against GET/POST next to nginx's ceiling, 1,000 long polls
#   worker  bench/worker.py: end-to-end echo jobs/s on 1 and 4 workers, Redis calls per job
#   sse     bench/sse.py: 10,000 SSE streams on one jobgate-logs, RSS, live-line latency
#   cluster bench/clusterbench.py: GET and POST over 1 and 20 queues, one Redis vs a 3+3 cluster
#   pubsub  bench/pubsub.py: PUBLISH vs SPUBLISH on a 3+3 cluster (only when named in BENCH_PARTS)
# BENCH_PARTS="http worker sse cluster" picks parts; the parts' own settings are in their files.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

PARTS=${BENCH_PARTS:-"http worker sse cluster"}
status=0
for part in $PARTS; do
    case $part in
        http)   script=bench/bench.py;  limit=300 ;;
        worker) script=bench/worker.py; limit=180 ;;
        sse)    script=bench/sse.py;    limit=180 ;;
        cluster) script=bench/clusterbench.py; limit=300 ;;
        pubsub) script=bench/pubsub.py; limit=120 ;;
        *)      echo "bench: unknown part $part (http, worker, sse, cluster, pubsub)"; status=1; continue ;;
    esac
    echo
    echo "==== bench: $part ($script, at most ${limit} s; load $(cut -d' ' -f1-3 /proc/loadavg)) ===="
    # SIGTERM at the limit (the scripts stop their stacks on it), SIGKILL 15 s later
    timeout -k 15 "$limit" "${PYTHON:-python3}" "$script"
    rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 143 ] || [ "$rc" -eq 137 ]; then
        echo "bench: $part ran out of time (${limit} s) and was stopped"
        status=1
    elif [ "$rc" -ne 0 ]; then
        echo "bench: $part failed (exit $rc)"
        status=1
    fi
done
exit $status
