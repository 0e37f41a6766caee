"""measure.py — what the benches measure with: a process's CPU seconds, RSS and open fds from
/proc (a neutral 0 / -1 for a process that is gone), and percentiles of sorted samples."""

import os


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


def tree(pid):
    """pid and all its descendants (from /proc, at the time of the call)."""
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
