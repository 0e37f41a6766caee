#!/usr/bin/env python3
"""pubsub.py — events on a Redis Cluster: classic PUBLISH on one global channel against Redis 7's
sharded SPUBLISH on per-queue (hash-tagged) channels, on a private 3 masters + 3 replicas cluster
(tests/cluster.py).

Each mode publishes N job events spread over Q queues, each on the master that owns its queue's
slot (where the job scripts run), paced to about R events/s, while S subscribers (one per
status/logs process) listen: classic, every subscriber SUBSCRIBEs `P:events` on some node (what
jobgate did before: any node); sharded, subscriber i SSUBSCRIBEs `P:{tag}:events` of queue i only,
at the master of its slot. Prints, per mode, each node's CPU (INFO cpu, user + sys) spent during
the run and what the subscribers received. Then checks two rules of Redis 7 that jobgate relies
on: SPUBLISH inside a script must name a channel of the script's slot, and a subscriber of a
shard channel whose slot moves to another master is sent `sunsubscribe` for it.
Figures of one run on a shared machine: noisy; compare the two modes of the same run.

    /usr/bin/python3 bench/pubsub.py [--events 20000] [--rate 5000] [--queues 20] [--subs 4]
"""

import argparse
import hashlib
import os
import socket
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import cluster  # noqa: E402
import harness  # noqa: E402


def tag(queue):
    return hashlib.sha256(queue.encode()).hexdigest()[:8]


def cpu_ms(node):
    info = node.call("INFO", "cpu")
    f = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return (float(f["used_cpu_user"]) + float(f["used_cpu_sys"])) * 1000


class Sub:
    """A raw subscriber connection that counts the messages it is pushed."""

    def __init__(self, node, cmd, channel):
        self.sock = socket.create_connection(("127.0.0.1", node.port), timeout=5)
        self.sock.sendall(harness.Redis._encode([cmd, channel]))
        self.data = b""
        deadline = time.time() + 5
        while b"subscribe" not in self.data and time.time() < deadline:
            self.data += self.sock.recv(65536)

    def drain(self):
        self.sock.setblocking(False)
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    break
                self.data += chunk
        except BlockingIOError:
            pass
        self.sock.setblocking(True)

    def count(self):
        return self.data.count(b"\r\nmessage\r\n") + self.data.count(b"\r\nsmessage\r\n")


def run_mode(c, mode, queues, events, rate, nsubs):
    masters = c.masters()
    owner = {q: c.master_of_key("{%s}" % tag(q)) for q in queues}
    if mode == "classic":
        subs = [Sub(masters[i % len(masters)], "SUBSCRIBE", "P:events") for i in range(nsubs)]
    else:
        subs = [Sub(owner[queues[i]], "SSUBSCRIBE", "P:{%s}:events" % tag(queues[i]))
                for i in range(nsubs)]
    before = {n.port: cpu_ms(n) for n in c.live()}
    cmd = "PUBLISH" if mode == "classic" else "SPUBLISH"
    batch = max(1, rate // 100)            # 100 pipelined batches a second
    t0 = time.time()
    sent = 0
    while sent < events:
        per_node = {}
        for k in range(batch):
            q = queues[(sent + k) % len(queues)]
            ch = "P:events" if mode == "classic" else "P:{%s}:events" % tag(q)
            per_node.setdefault(owner[q].port, []).append(
                (cmd, ch, "job %s.%022d 7" % (tag(q), sent + k)))
        for port, cmds in per_node.items():
            c.node_at(port).client.pipeline(cmds)
        sent += batch
        ahead = sent / rate - (time.time() - t0)
        if ahead > 0:
            time.sleep(ahead)
    took = time.time() - t0
    time.sleep(0.3)
    for s in subs:
        s.drain()
    after = {n.port: cpu_ms(n) for n in c.live()}
    got = [s.count() for s in subs]
    for s in subs:
        s.sock.close()
    return took, {p: after[p] - before[p] for p in after}, got


def check_script_rule(c):
    """SPUBLISH in a script: the channel must be in the slot of the script's keys."""
    q = "default"
    node = c.master_of_key("{%s}" % tag(q))
    body = "return redis.call('SPUBLISH', ARGV[1], 'x')"
    same = node.client.pipeline([("EVAL", body, 1, "P:{%s}:job:x" % tag(q),
                                  "P:{%s}:events" % tag(q))])[0]
    other = None
    for o in ("q1", "q2", "q3", "q4", "q5", "q6"):
        if c.master_of_key("{%s}" % tag(o)) is node and \
                c.slot_of("{%s}" % tag(o)) != c.slot_of("{%s}" % tag(q)):
            other = o
            break
    cross = node.client.pipeline([("EVAL", body, 1, "P:{%s}:job:x" % tag(q),
                                   "P:{%s}:events" % tag(other))])[0] if other else "n/a"
    far = next(o for o in ("q%d" % i for i in range(1, 40))
               if c.master_of_key("{%s}" % tag(o)) is not node)
    away = node.client.pipeline([("EVAL", body, 1, "P:{%s}:job:x" % tag(q),
                                  "P:{%s}:events" % tag(far))])[0]
    print("SPUBLISH in a script, channel in the key's slot: %r" % (same,))
    print("SPUBLISH in a script, channel of a slot of another master: %r" % (away,))
    print("SPUBLISH in a script, channel of another slot on the same node: %r" % (cross,))


def check_migration(c):
    q = "default"
    slot = c.slot_of("{%s}" % tag(q))
    src = c.master_of_slot(slot)
    s = Sub(src, "SSUBSCRIBE", "P:{%s}:events" % tag(q))
    dst = next(n for n in c.masters() if n is not src)
    c.move_slot(slot, dst)
    time.sleep(0.3)
    s.drain()
    pushed = s.data.decode(errors="replace").replace("\r\n", " ")
    print("subscriber at the old master after the slot moved was pushed: %s" % pushed)
    c.move_slot(slot, src)
    s.sock.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--queues", type=int, default=20)
    ap.add_argument("--subs", type=int, default=4)
    a = ap.parse_args()
    queues = ["default"] + ["q%d" % i for i in range(1, a.queues)]
    with cluster.Cluster() as c:
        roles = {n.port: n.role() for n in c.live()}
        print("pubsub: %d events over %d queues at ~%d/s, %d subscribers, 3+3 cluster (noisy)"
              % (a.events, a.queues, a.rate, a.subs))
        for mode in ("classic", "sharded"):
            took, cpu, got = run_mode(c, mode, queues, a.events, a.rate, a.subs)
            print("%-8s %.1f s  node CPU ms: %s  total %.0f" % (
                mode, took,
                "  ".join("%s%d=%.0f" % (roles[p][0], p, cpu[p]) for p in sorted(cpu)),
                sum(cpu.values())))
            print("         messages received per subscriber: %s (of %d published; one queue "
                  "is %d)" % (got, a.events, a.events // a.queues))
        check_script_rule(c)
        check_migration(c)


if __name__ == "__main__":
    main()
