#!/usr/bin/env python3
"""funclib.py — a prototype, bench only: redis/*.lua as one Redis 7 function library.

Issue 15 asked whether FUNCTION LOAD + FCALL costs Redis less than EVALSHA of the same scripts.
This builds, from the scripts as they are (or as a git revision has them), one library
`#!lua name=<name>`: the renderer block (`-- >>> render` ... `-- <<< render`) once at its top
level, then per script a `do ... end` holding what the script has before the block (its `int`)
and `redis.register_function{function_name = <script name>, callback = function(KEYS, ARGV)
<the script's text after the block> end, flags = <its shebang's flags>}`. The library's top
level runs once, at FUNCTION LOAD; a call runs only its callback. KEYS and ARGV are the same.

With jt_cache=True, j_t keeps the text of the last second it rendered (an upvalue that lasts
across calls in a library): a time in that second costs only its milliseconds.

    /usr/bin/python3 bench/funclib.py [--rev REV] [--jt-cache] > jobgate.lib.lua
"""

import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["submit", "claim", "log", "complete", "giveback", "cancel", "retry", "delete", "renew",
           "resume", "list", "qstats", "ratelimit"]

JT_OLD_HEAD = "local function j_t(x)"
JT_RENDER_HEAD = "local function j_t_render(x)"
# after the block's j_t, renamed j_t_render: j_t renders a new second with it and keeps that
# second's text (to its ".", 21 bytes) for the next times in the same second
JT_CACHE = '''local jt_sec, jt_head   -- the last second rendered (ms // 1000), its text to "."
local function j_t(x)   -- j_t_render's text, a time in the last second rendered from jt_head
  if not x or x == '' then return 'null' end
  local ms = tonumber(x) or 0
  local msec = ms % 1000
  local secs = (ms - msec) / 1000
  if secs ~= jt_sec then
    local text = j_t_render(ms)
    jt_sec, jt_head = secs, string.sub(text, 1, 21)
    return text
  end
  return jt_head .. string.char(48 + (msec - msec % 100) / 100,
    48 + (msec - msec % 10) / 10 % 10, 48 + msec % 10, 90, 34)
end
'''

def source(rev, name):
    if rev is None:
        with open(os.path.join(ROOT, "redis", name + ".lua")) as f:
            return f.read()
    return subprocess.run(["git", "-C", ROOT, "show", "%s:redis/%s.lua" % (rev, name)],
                          check=True, capture_output=True, text=True).stdout


def split(text):
    """(flags, before the block, the block, after it) of one script ("" block if none)."""
    first, rest = text.split("\n", 1)
    m = re.match(r"#!lua(?:\s+flags=(\S*))?\s*$", first)
    flags = m.group(1).split(",") if m and m.group(1) else []
    if "-- >>> render" not in rest:
        return flags, "", "", rest
    pre, tail = rest.split("-- >>> render", 1)
    block, post = tail.split("-- <<< render", 1)
    return flags, pre, "-- >>> render" + block + "-- <<< render\n", post.split("\n", 1)[1]


def library(rev=None, name="jobgate", jt_cache=False, only=None):
    out, block = ["#!lua name=%s\n" % name], None
    parts = []
    for s in only or SCRIPTS:
        flags, pre, b, post = split(source(rev, s))
        if b:
            block = block or b
        parts.append((s, flags, pre, post))
    if block:
        if jt_cache:
            start = block.index(JT_OLD_HEAD)
            end = block.index("\nend\n", start) + len("\nend\n")
            block = (block[:start] + JT_RENDER_HEAD + block[start + len(JT_OLD_HEAD):end] +
                     JT_CACHE + block[end:])
        out.append(block)
    for s, flags, pre, post in parts:
        out.append("do\n%sredis.register_function{function_name = '%s', flags = {%s},\n"
                   "callback = function(KEYS, ARGV)\n%s\nend}\nend\n"
                   % (pre, s, ", ".join("'%s'" % f for f in flags), post))
    return "".join(out)


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--rev", default=None)
    ap.add_argument("--jt-cache", action="store_true")
    a = ap.parse_args()
    print(library(a.rev, jt_cache=a.jt_cache), end="")
