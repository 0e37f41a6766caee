#!/usr/bin/env python3
"""clusterbench.py — `make bench`'s cluster part (issue 16): the same submit (POST /api/jobs) and
status (GET /api/jobs/{id}) wrk loads against one Redis and against a Redis Cluster of 3 masters
and 3 replicas, with the jobs over 1 queue and over 20 queues, each next to nginx's own
`return 200` of the same stack. Prints figures; asserts nothing.

For each kind of Redis in turn a private stack (tests/harness.py: jobgate-submit and
jobgate-status under spawn-fcgi, nginx with nginx/jobgate.conf as shipped, 2 nginx workers), on
one redis-server (a unix socket, as `make run`) or on a private cluster (tests/cluster.py:
loopback ports, no persistence, the programs' REDIS_URL redis+cluster://...). Then, per stack:
  - nginx `return 200`: the ceiling of this machine at that moment (again after the other runs:
    the shares are of the mean of the two);
  - GET /api/jobs/{id} over BENCH_CLUSTER_JOBS jobs of 1 queue, then of 20 queues (each wrk
    connection takes the ids in turn);
  - POST /api/jobs (an echo job, no worker) into 1 queue, then into 20 queues in turn; Redis is
    emptied (FLUSHALL) after each POST run, so every run starts from the same data.
For each run: requests/s, p99, errors, the share of the ceiling; CPU µs per request of nginx, the
programs and Redis from /proc (on the cluster each node, the masters summed and the replicas
summed: what replication costs); Redis' read/write system calls (/proc/PID/io) and event-loop
wake-ups per request (what the cluster bus and replication add); Redis commands per request from
INFO commandstats summed over the masters (a script's own commands included), the replicas'
apart; and on the cluster how the commands spread over the masters, and which master holds which
of the 20 queues (a queue is one slot, its `{tag}`, so one master).

    python3 bench/clusterbench.py
Environment: BENCH_DURATION (s per wrk run, 10), BENCH_CONNECTIONS (64), BENCH_THREADS (wrk
threads, 2), BENCH_PROGRAM_THREADS (each program's default), BENCH_CLUSTER_KINDS ("single cluster"), BENCH_CLUSTER_JOBS
(jobs the GETs read, 200), BENCH_SINGLE_VIA (unix, or tcp: the one Redis over loopback TCP as the
cluster is), BENCH_CLUSTER_REPLICAS (replicas per master, 1; 0 shows what replication costs),
JOBGATE_BUILD (build).
"""

import hashlib
import os
import subprocess
import sys

from measure import commandstats, cpu_s, env, harness, io_calls, tree, wakeups, wrk

import cluster as rcluster  # tests/cluster.py, on the path measure set

DURATION = env("BENCH_DURATION", 10)
CONNECTIONS = env("BENCH_CONNECTIONS", 64)
WRK_THREADS = env("BENCH_THREADS", 2)
PROGRAM_THREADS = env("BENCH_PROGRAM_THREADS", 0)   # 0: no --threads, each program's default
KINDS = env("BENCH_CLUSTER_KINDS", "single cluster").split()
JOBS = env("BENCH_CLUSTER_JOBS", 200)
SINGLE_VIA = env("BENCH_SINGLE_VIA", "unix")
REPLICAS = env("BENCH_CLUSTER_REPLICAS", 1)
QUEUES = {1: ["bench-q0"], 20: ["bench-q%d" % i for i in range(20)]}
PREFIX = "jobgate"

CEILING = r"""
        location = /bench/ceiling { return 200 "ok\n"; }
"""

# One wrk script for every run but the ceiling: each connection's requests take the paths (GET)
# or the bodies (POST) in turn, so 1 queue and 20 queues differ only in the list.
WRK_LUA = r"""
local paths = { %(paths)s }
local bodies = { %(bodies)s }
local i = 0
wrk.method = "%(method)s"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i + 1
  return wrk.format(nil, paths[(i %% #paths) + 1], nil, bodies[(i %% #bodies) + 1])
end
"""


def lua_str(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


def write_lua(path, method, paths, bodies=(None,)):
    with open(path, "w") as f:
        f.write(WRK_LUA % {"method": method, "paths": ", ".join(lua_str(p) for p in paths),
                           "bodies": ", ".join("nil" if b is None else lua_str(b)
                                               for b in bodies)})
    return path


def queue_tag(queue):
    """A queue's hash tag (shared/keys.c, jg_queue_tag): the first 8 hex of SHA-256(name)."""
    return hashlib.sha256(queue.encode()).hexdigest()[:8]


class Redises:
    """The Redis processes of one stack: one redis-server, or the nodes of a cluster (masters
    in port order, then each master's replica in the same order). Per node: its label, pid and a
    client for INFO and CONFIG RESETSTAT."""

    def __init__(self, stack, cl):
        self.cluster = cl
        if cl is None:
            self.nodes = [("redis", stack.redis_proc.pid, stack.redis)]
            self.masters = self.nodes
            self.replicas = []
            return
        masters = sorted(cl.masters(), key=lambda n: n.port)
        replica_of = {}
        for n in cl.live():
            role = n.call("ROLE")
            if role[0] == "slave":
                replica_of[int(role[2])] = n
        self.masters = [("M%d:%d" % (i + 1, m.port), m.proc.pid, m.call)
                        for i, m in enumerate(masters)]
        self.replicas = [("R%d:%d" % (i + 1, replica_of[m.port].port),
                          replica_of[m.port].proc.pid, replica_of[m.port].call)
                         for i, m in enumerate(masters) if m.port in replica_of]
        self.nodes = self.masters + self.replicas
        self.master_nodes = masters
        ranges = masters[0].call("CLUSTER", "SLOTS")
        self.slots = {label: ",".join("%d-%d" % (lo, hi) for lo, hi, m, *_ in ranges
                                      if int(m[1]) == node.port)
                      for (label, _, _), node in zip(self.masters, masters)}

    def master_of_queue(self, queue):
        """The label of the master serving a queue's slot (the cluster) or "redis"."""
        if self.cluster is None:
            return "redis"
        node = self.cluster.master_of_slot(rcluster.key_slot("{%s}" % queue_tag(queue)))
        return self.masters[self.master_nodes.index(node)][0]

    def cpu(self):
        return {label: cpu_s(pid) for label, pid, _ in self.nodes}

    def wakeups(self):
        return {label: wakeups(pid) for label, pid, _ in self.nodes}

    def io_calls(self):
        return {label: io_calls(pid) for label, pid, _ in self.nodes}

    def reset_stats(self):
        for _, _, call in self.nodes:
            call("CONFIG", "RESETSTAT")

    def commands(self):
        return {label: commandstats(call("INFO", "commandstats")) for label, _, call in self.nodes}


def make_jobs(s, queues, n):
    """n echo jobs spread over queues in turn, through POST /api/jobs; their ids."""
    return [s.submit(type="echo", queue=queues[i % len(queues)], payload={"n": i})["id"]
            for i in range(n)]


def run_kind(kind):
    """Starts a stack on `kind` Redis, runs the loads, stops it; returns (runs, redises info)."""
    cl = rcluster.Cluster(masters=3, replicas=REPLICAS) if kind == "cluster" else None
    try:
        with harness.Stack(name="clbench", programs=("submit", "status"), threads=PROGRAM_THREADS,
                           nginx_extra=CEILING, grace=5, nginx_workers=2, cluster=cl, front="nginx",
                           redis_via=SINGLE_VIA) as s:
            rs = Redises(s, cl)
            base = "http://127.0.0.1:%d" % s.port
            ids = {q: make_jobs(s, QUEUES[q], JOBS) for q in sorted(QUEUES)}
            lua = {}
            for q in sorted(QUEUES):
                lua["GET", q] = write_lua(os.path.join(s.dir, "get%d.lua" % q), "GET",
                                          ["/api/jobs/" + i for i in ids[q]])
                lua["POST", q] = write_lua(
                    os.path.join(s.dir, "post%d.lua" % q), "POST", ["/api/jobs"],
                    ['{"type":"echo","queue":"%s","payload":{"n":1}}' % name
                     for name in QUEUES[q]])
            runs = [("nginx return 200", base + "/bench/ceiling", None, False)]
            runs += [("GET, %d queue%s" % (q, "s" if q > 1 else ""), base + "/api/jobs/x",
                      lua["GET", q], False) for q in sorted(QUEUES)]
            runs += [("POST, %d queue%s" % (q, "s" if q > 1 else ""), base + "/api/jobs",
                      lua["POST", q], True) for q in sorted(QUEUES)]
            runs += [("nginx return 200 (again)", base + "/bench/ceiling", None, False)]
            groups = {"nginx": tree(s.nginx_proc.pid),
                      "submit": s.program_pids("submit"), "status": s.program_pids("status")}
            print("bench: %s: %s; load %s" % (kind, ", ".join(l for l, _, _ in rs.nodes),
                                               load()), flush=True)
            out = []
            for name, url, script, flush in runs:
                print("bench: %s: %s ..." % (kind, name), flush=True)
                rs.reset_stats()
                before = {g: cpu_s(p) for g, p in groups.items()}
                before_r, before_w, before_io = rs.cpu(), rs.wakeups(), rs.io_calls()
                res = wrk(url, DURATION, CONNECTIONS, WRK_THREADS, script)
                res["cpu"] = {g: cpu_s(p) - before[g] for g, p in groups.items()}
                after_r, after_w, after_io = rs.cpu(), rs.wakeups(), rs.io_calls()
                res["node_cpu"] = {k: after_r[k] - before_r[k] for k in after_r}
                res["node_wakeups"] = {k: after_w[k] - before_w[k] for k in after_w}
                res["node_io"] = {k: after_io[k] - before_io[k] for k in after_io}
                res["cmds"] = rs.commands()
                out.append((name, res))
                if flush:
                    s.redis("FLUSHALL")
            dead = s.check_alive()
            if dead:
                print("bench: a process died during the runs:\n" + "\n".join(dead))
            spread = {}
            for q in QUEUES[20]:
                m = rs.master_of_queue(q)
                spread[m] = spread.get(m, 0) + 1
            return out, rs, spread
    finally:
        if cl is not None:
            cl.stop()


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def per_req(x, r):
    return 1e6 * x / max(1, r["requests"])


def print_results(results):
    kinds = [k for k in KINDS if k in results]
    names = [n for n, _ in results[kinds[0]][0]]
    label = {"single": "one Redis", "cluster": "cluster 3+%d" % (3 * REPLICAS)}

    print("\nrequests/s (share of that stack's nginx return 200: the mean of its first and last "
          "runs), p99 ms, errors:")
    print("%-22s" % "run" + "".join("  %-36s" % label[k] for k in kinds))
    for i, name in enumerate(names):
        row = "%-22s" % name
        for k in kinds:
            runs = results[k][0]
            r = runs[i][1]
            ceil = (runs[0][1]["rps"] + runs[-1][1]["rps"]) / 2 or float("nan")
            row += "  %8.0f (%4.0f%%) p99 %6s err %-5d" % (
                r["rps"], 100.0 * r["rps"] / ceil,
                "%.2f" % r["p99"] if r["p99"] is not None else "-", r["non2xx"] + r["errors"])
        print(row)

    print("\nCPU µs per request (wrk itself not counted; on the cluster: masters summed, "
          "replicas summed):")
    print("%-22s" % "run" + "".join("  %-44s" % label[k] for k in kinds))
    print("%-22s" % "" + "".join("  %8s %8s %8s %8s %8s" % (
        ("nginx", "submit", "status", "redis", "") if k == "single" else
        ("nginx", "submit", "status", "masters", "replicas")) for k in kinds))
    for i, name in enumerate(names):
        row = "%-22s" % name
        for k in kinds:
            r, rs = results[k][0][i][1], results[k][1]
            m = sum(r["node_cpu"][l] for l, _, _ in rs.masters)
            rep = sum(r["node_cpu"][l] for l, _, _ in rs.replicas)
            row += "  %8.1f %8.1f %8.1f %8.1f %8s" % (
                per_req(r["cpu"]["nginx"], r), per_req(r["cpu"]["submit"], r),
                per_req(r["cpu"]["status"], r), per_req(m, r),
                "%.1f" % per_req(rep, r) if rs.replicas else "")
        print(row)

    print("\nRedis per request: read+write system calls (/proc/PID/io) and wake-ups (its main "
          "thread's voluntary context switches: the event loop slept, then was woken); on the "
          "cluster, masters summed and replicas summed:")
    print("%-22s" % "run" + "".join("  %-27s" % label[k] for k in kinds))
    print("%-22s" % "" + "".join("  %13s %13s" % (("redis", "") if k == "single" else
                                                 ("masters", "replicas")) for k in kinds))
    for i, name in enumerate(names):
        row = "%-22s" % name
        for k in kinds:
            r, rs = results[k][0][i][1], results[k][1]
            n = max(1, r["requests"])

            def two(nodes):
                return "%5.2f / %5.2f" % (sum(r["node_io"][l] for l, _, _ in nodes) / n,
                                          sum(r["node_wakeups"][l] for l, _, _ in nodes) / n)
            row += "  %13s %13s" % (two(rs.masters), two(rs.replicas) if rs.replicas else "")
        print(row)

    if "cluster" in results:
        runs, rs, spread = results["cluster"]
        labels = [l for l, _, _ in rs.nodes]
        print("\ncluster: CPU µs per request by node, and each master's share of the masters' "
              "commands:")
        print("%-22s" % "run" + "".join(" %10s" % l for l in labels) + "   share of commands")
        for name, r in runs:
            total = sum(sum(r["cmds"][l].values()) for l, _, _ in rs.masters)
            share = " / ".join("%.0f%%" % (100.0 * sum(r["cmds"][l].values()) / total)
                               for l, _, _ in rs.masters) if total >= r["requests"] else "-"
            print("%-22s" % name + "".join(" %10.1f" % per_req(r["node_cpu"][l], r)
                                           for l in labels) + "   " + share)
        print("the 20 queues by master (a queue is one slot, its {tag}): " +
              ", ".join("%s (slots %s) %d" % (l, rs.slots[l], spread.get(l, 0))
                        for l, _, _ in rs.masters))

    print("\nRedis commands per request (INFO commandstats; scripts' own commands included; "
          "the cluster's summed over its masters, its replicas' apart):")
    for k in kinds:
        runs, rs, _ = results[k]
        for name, r in runs[1:]:
            tot = {}
            for l, _, _ in rs.masters:
                for c, v in r["cmds"][l].items():
                    tot[c] = tot.get(c, 0) + v
            n = max(1, r["requests"])
            line = ", ".join("%s %.2f" % (c, v / n) for c, v in
                             sorted(tot.items(), key=lambda kv: -kv[1]) if v / n >= 0.01) or "-"
            if rs.replicas:
                rep = sum(sum(r["cmds"][l].values()) for l, _, _ in rs.replicas)
                line += "; replicas: %.2f in all" % (rep / n)
            print("  %-12s %-16s %s" % (label[k], name, line))
    for k in kinds:
        for name, r in results[k][0]:
            if r["rps"] == 0:
                print("\nbench: %s, %s gave no figures; wrk said:\n%s" % (label[k], name, r["raw"]))


def main():
    os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin"
    for tool in ("wrk", "nginx", "redis-server", "redis-cli", "spawn-fcgi"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode:
            sys.exit("bench: %s is not installed (make deps)" % tool)
    bad = [k for k in KINDS if k not in ("single", "cluster")]
    if bad or not KINDS:
        sys.exit("bench: BENCH_CLUSTER_KINDS: single and/or cluster, not %r" % " ".join(bad))
    harness.install_signal_handlers()
    if env("FRONT", "nginx") != "nginx":
        print("bench: the cluster part runs behind nginx only (FRONT=%s is for the others)"
              % env("FRONT", "nginx"))
    print("bench: wrk -t%d -c%d -d%ds per run, loopback, %d CPUs; %d jobs read by the GETs; "
          "one Redis over %s, the cluster over TCP" % (WRK_THREADS, CONNECTIONS, DURATION,
                                                     os.cpu_count() or 0, JOBS, SINGLE_VIA),
          flush=True)
    results = {}
    for kind in KINDS:
        results[kind] = run_kind(kind)
    print_results(results)
    print("\nbench: stacks stopped; load %s" % load())


if __name__ == "__main__":
    main()
