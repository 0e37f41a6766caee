#!/bin/sh
# flaky — payload {"fail_times":N}: fails (exit 1) while JOBGATE_ATTEMPT <= N, then succeeds
# with result {"attempt":n}.
exec python3 -c '
import json, os, sys
n = json.load(sys.stdin).get("fail_times", 1)
attempt = int(os.environ["JOBGATE_ATTEMPT"])
if not isinstance(n, int) or isinstance(n, bool):
    sys.exit("flaky: payload.fail_times must be an integer")
if attempt <= n:
    sys.stderr.write("flaky: attempt %d of %d planned failures\n" % (attempt, n))
    sys.exit(1)
with open(os.environ["JOBGATE_RESULT_FILE"], "w") as f:
    json.dump({"attempt": attempt}, f)
'
