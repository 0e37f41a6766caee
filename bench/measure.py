"""measure.py — what the benches measure with: a process's CPU seconds, RSS and open fds from
/proc (a neutral 0 / -1 for a process that is gone), percentiles of sorted samples, wrk runs,
Redis' INFO commandstats; and the boilerplate every bench shares: tests/ on the import path (for
harness, the stacks they start) and their BENCH_* settings read from the environment.

    from measure import env, harness, cpu_s, pct
    WAITERS = env("BENCH_WAITERS", 1000)
"""

import os
import re
import resource
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(ROOT, "tests") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "tests"))

import harness  # noqa: E402,F401  (re-exported: the benches' stacks)


def env(name, default):
    """The setting name from the environment, as the type of default (int, float or str);
    default when it is unset or empty."""
    v = os.environ.get(name, "")
    return default if v == "" else type(default)(v)


def cpu_s(pids, children=False):
    """User + system CPU seconds used so far by pids (threads included); pids: one or a list.
    children=True: the CPU of their children that they have reaped instead."""
    if isinstance(pids, int):
        pids = [pids]
    total = 0
    at = 13 if children else 11
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[at]) + int(fields[at + 1])
        except (OSError, ValueError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def wakeups(pid):
    """How many times pid's main thread blocked and was woken again so far
    (voluntary_ctxt_switches; for an event loop such as Redis': its epoll_wait sleeps); 0 when
    the process is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def io_calls(pid):
    """Read and write system calls made so far by pid, all its threads (/proc/PID/io syscr +
    syscw: read, recv, write, send...; not epoll_wait); 0 when the process is gone."""
    try:
        with open("/proc/%d/io" % pid) as f:
            d = dict(line.split(":", 1) for line in f if ":" in line)
        return int(d["syscr"]) + int(d["syscw"])
    except (OSError, KeyError, ValueError):
        return 0


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def pct(xs, p):
    """The p-th percentile of the sorted list xs (nan when empty)."""
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def _ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url, duration, connections=64, threads=2, script=None):
    """Runs wrk for duration seconds; returns a dict: rps, requests (completed), p50 and p99
    (ms, None if wrk gave none), non2xx, errors (socket errors), cpu (wrk's own CPU seconds)
    and raw (wrk's output)."""
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", "%ds" % duration,
            "--timeout", "10s", "--latency"]
    if script:
        argv += ["-s", script]
    argv.append(url)
    # wrk's own CPU: what this process's reaped children used, before and after (the benches
    # reap nothing else while wrk runs)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(argv, capture_output=True, timeout=duration + 60)
    ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = p.stdout.decode()
    res = {"rps": 0.0, "requests": 0, "p50": None, "p99": None, "non2xx": 0, "errors": 0,
           "raw": out, "cpu": (ru2.ru_utime + ru2.ru_stime) - (ru.ru_utime + ru.ru_stime)}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in ", out, re.M)
    if m:
        res["requests"] = int(m.group(1))
    for pc, key in (("50", "p50"), ("99", "p99")):
        m = re.search(r"^\s+%s(?:\.000)?%%\s+([\d.]+)(us|ms|s|m)\s*$" % pc, out, re.M)
        if m:
            res[key] = _ms(m.group(1), m.group(2))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["errors"] = sum(int(x) for x in m.groups())
    return res


def commandstats(info):
    """{command: calls} from the text of INFO commandstats (since the last CONFIG RESETSTAT),
    without the bench's own INFO and CONFIG RESETSTAT."""
    out = {}
    for line in info.splitlines():
        m = re.match(r"^cmdstat_([^:]+):calls=(\d+)", line)
        if m and m.group(1) not in ("info", "config|resetstat"):
            out[m.group(1)] = int(m.group(2))
    return out


def info_field(info, name):
    """The integer field name of an INFO section's text (0 when absent)."""
    m = re.search(r"^%s:(\d+)" % re.escape(name), info, re.M)
    return int(m.group(1)) if m else 0


def callgrind_phase(pid, d, seen, name):
    """Instructions callgrind counted in process pid since its last zeroing: dumps them as part
    name (its files cg.* in directory d; those in the set seen are older dumps, and the new one
    is added), reads the new dump's total, zeroes the counts. Returns the total."""
    subprocess.run(["callgrind_control", "-d", name, str(pid)], check=True, capture_output=True)
    total = 0
    for f in sorted(os.listdir(d)):
        if f.startswith("cg.") and f not in seen:
            seen.add(f)
            for line in open(os.path.join(d, f)):
                if line.startswith(("summary:", "totals:")):
                    total = int(line.split()[1])
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    return total


def tree(pid):
    """pid and all its descendants (from /proc, at the time of the call): e.g. an nginx master
    and its workers."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def stop(procs):
    """Stops the processes a bench started itself (subprocess.Popen), newest first: SIGTERM,
    then SIGKILL for one still running after 30 s."""
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def submit_script_calls(sha, queue, type_, ids, payload=lambda i: "{}", delay_ms=0, prefix="jobgate"):
    """EVALSHA calls of redis/submit.lua (loaded as sha) creating one job per id of `ids` in
    queue, as jobgate-submit would, the script rendering each job object (docs/redis.md,
    "submit.lua"): for benches that need many jobs without as many HTTP submits. Each id must
    start with the queue's tag (keys.c)."""
    calls = []
    for i, jid in enumerate(ids):
        tag = jid.split(".", 1)[0]
        q = "%s:{%s}:q:%s:" % (prefix, tag, queue)
        keys = ["%s:{%s}:job:%s" % (prefix, tag, jid), q + "ready:" + type_]
        argv = [jid, queue, type_, payload(i), "0", "3", "300000", str(delay_ms), "0" * 64, "", "",
                ""]
        calls.append(["EVALSHA", sha, str(len(keys))] + keys + argv)
    return calls
