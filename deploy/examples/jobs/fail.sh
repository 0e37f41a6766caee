#!/bin/sh
# fail — payload {"message":M}: prints M on stderr and exits 1 (the attempt's error is then
# "exit status 1: <last line of M>"). Default message: "failed on purpose".
exec python3 -c '
import json, sys
m = json.load(sys.stdin).get("message", "failed on purpose")
sys.stderr.write(m if isinstance(m, str) else json.dumps(m))
sys.stderr.write("\n")
sys.exit(1)
'
