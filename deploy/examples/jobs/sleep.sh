#!/bin/sh
# sleep — payload {"ms":N,"steps":K}: K log lines "step i/K" with progress, spread over N ms;
# result {"slept_ms":N}. Defaults: ms 1000, steps 1.
exec python3 -u -c '
import json, os, sys, time
p = json.load(sys.stdin)
ms, steps = p.get("ms", 1000), p.get("steps", 1)
if not isinstance(ms, int) or isinstance(ms, bool) or not 0 <= ms <= 86400000:
    sys.exit("sleep: payload.ms must be an integer 0..86400000")
if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 10000:
    sys.exit("sleep: payload.steps must be an integer 1..10000")
for i in range(1, steps + 1):
    time.sleep(ms / steps / 1000.0)
    print("step %d/%d" % (i, steps))
    print("::progress %d" % (i * 100 // steps))
with open(os.environ["JOBGATE_RESULT_FILE"], "w") as f:
    json.dump({"slept_ms": ms}, f)
'
