#!/bin/sh
# lines — payload {"count":N}: prints "line 1" ... "line N" on stdout; result {"count":N}.
exec python3 -c '
import json, os, sys
n = json.load(sys.stdin).get("count", 10)
if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 10000000:
    sys.exit("lines: payload.count must be an integer 0..10000000")
out = sys.stdout
for i in range(1, n + 1):
    out.write("line %d\n" % i)
out.flush()
with open(os.environ["JOBGATE_RESULT_FILE"], "w") as f:
    json.dump({"count": n}, f)
'
