"""cluster.py — a private Redis Cluster for the tests: 3 masters + 3 replicas
(redis-server --cluster-enabled yes on free loopback ports, no persistence, all files under a
temp dir), built with `redis-cli --cluster create ... --cluster-replicas 1`, stopped by pid.

    with Cluster() as c:
        c.url                        # redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...
        c.master_of_key("k")         # the Node holding k's slot now
        c.kill(node)                 # SIGKILL; c.wait_promoted(node) waits for its replica

Cluster(ip=..., netns=...) runs the nodes inside a network namespace (tests/netns.py), bound to
and announcing (cluster-announce-ip) that address, for programs of other namespaces to reach.
"""

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import harness


def _bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_cluster_port():
    """A free port P whose cluster bus port P+10000 is free too (so P <= 55535): the kernel's
    ephemeral ports (harness.free_port) are often above that."""
    while True:
        port = random.randint(12000, 32000)
        if _bindable(port) and _bindable(port + 10000):
            return port


def free_cluster_ports(n):
    """A base port B with B..B+n-1 and their bus ports free (for REDIS_CLUSTER=3 make run)."""
    while True:
        base = random.randint(12000, 32000 - n)
        if all(_bindable(p) and _bindable(p + 10000) for p in range(base, base + n)):
            return base


def port_in_use(port):
    return not _bindable(port)


class Node:
    def __init__(self, cluster, port):
        self.cluster = cluster
        self.port = port
        self.dir = os.path.join(cluster.dir, str(port))
        os.makedirs(self.dir)
        self.proc = None
        self.client = harness.Redis(host=cluster.ip, port=port, timeout=5, netns=cluster.netns)

    def start(self):
        args = ["redis-server", "--port", str(self.port), "--bind", self.cluster.ip,
                "--cluster-announce-ip", self.cluster.ip,
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "1000", "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--daemonize", "no", "--protected-mode", "no",
                "--logfile", ""] + list(harness.REDIS_RECOMMENDED)
        env = dict(os.environ)
        env["JOBGATE_HARNESS_TOKEN"] = harness._RUN_TOKEN
        self.proc = harness.Proc("redis-%d" % self.port,
                                 harness.netns_argv(self.cluster.netns, args), env,
                                 os.path.join(self.dir, "redis.log"))

    def call(self, *args):
        return self.client.call(*args)

    @property
    def addr(self):
        return "%s:%d" % (self.cluster.ip, self.port)

    def role(self):
        return self.call("ROLE")[0]

    def __repr__(self):
        return "node %d" % self.port


class Cluster:
    def __init__(self, masters=3, replicas=1, ip="127.0.0.1", netns=None):
        self.ip, self.netns = ip, netns
        self.dir = tempfile.mkdtemp(prefix="jg-cluster-")
        self.nodes = []
        try:
            self._start_nodes(masters * (1 + replicas))
            self._create(replicas)
        except BaseException:
            self.stop()
            raise

    def _new_node(self):
        """A node on a free port that no node of this cluster had (two random picks can meet,
        and a port given up on stays this cluster's directory)."""
        while True:
            port = free_cluster_port()
            if not os.path.exists(os.path.join(self.dir, str(port))):
                return Node(self, port)

    def _start_nodes(self, count):
        """Starts count nodes at once, then waits for each; a port taken between the probe and
        the bind (another test run) gets another one, a few times."""
        for _ in range(4):
            new = [self._new_node() for _ in range(count - len(self.nodes))]
            for n in new:
                n.start()
            for n in new:
                try:
                    harness.wait_until(lambda: n.call("PING") == "PONG", 10,
                                       "redis %d PING" % n.port)
                    self.nodes.append(n)
                except AssertionError:
                    n.proc.stop(signal.SIGKILL, 5)
            if len(self.nodes) == count:
                return
        raise harness.HarnessError("cannot start %d cluster nodes" % count)

    def _create(self, replicas):
        argv = ["redis-cli", "--cluster", "create"] + [n.addr for n in self.nodes] + \
               ["--cluster-replicas", str(replicas), "--cluster-yes"]
        p = subprocess.run(harness.netns_argv(self.netns, argv), capture_output=True, timeout=60)
        if p.returncode != 0:
            raise harness.HarnessError("redis-cli --cluster create failed: %s"
                                       % p.stdout.decode()[-800:] + p.stderr.decode()[-400:])
        self.wait_ok()

    def wait_ok(self, timeout=20):
        """Waits until every live node says cluster_state:ok and agrees on 3 masters."""
        def ok():
            for n in self.live():
                info = n.call("CLUSTER", "INFO")
                if "cluster_state:ok" not in info:
                    return False
            return True
        harness.wait_until(ok, timeout, "cluster_state:ok on every node", interval=0.1)

    def stop(self):
        for n in self.nodes:
            if n.proc:
                n.proc.stop(signal.SIGKILL, 5)
            with contextlib.suppress(Exception):
                n.client.close()
        if not os.environ.get("JOBGATE_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.stop()
        return False

    @property
    def url(self):
        return "redis+cluster://" + ",".join(n.addr for n in self.nodes)

    def live(self):
        return [n for n in self.nodes if n.proc.alive()]

    def masters(self):
        return [n for n in self.live() if n.role() == "master"]

    def node_at(self, port):
        return next(n for n in self.nodes if n.port == port)

    def slot_of(self, key):
        return int(self.live()[0].call("CLUSTER", "KEYSLOT", key))

    def master_of_slot(self, slot):
        for lo, hi, master, *_ in self.live()[0].call("CLUSTER", "SLOTS"):
            if lo <= slot <= hi:
                return self.node_at(int(master[1]))
        raise AssertionError("slot %d has no master" % slot)

    def master_of_key(self, key):
        return self.master_of_slot(self.slot_of(key))

    def node_id(self, node):
        return node.call("CLUSTER", "MYID")

    def kill(self, node):
        node.proc.stop(signal.SIGKILL, 5)

    def restart(self, node, timeout=30):
        """Starts a killed node again (same port, its nodes.conf, no data): it rejoins as a
        replica of the master that took its slots. Waits until that master counts it as a
        replica whose link is up (its first sync done)."""
        node.start()
        harness.wait_until(lambda: node.call("PING") == "PONG", 10, "%r PING" % node)

        def synced():
            info = node.call("INFO", "replication")
            return "role:slave" in info and "master_link_status:up" in info
        harness.wait_until(synced, timeout, "%r a replica again, in sync" % node, interval=0.1)

    def wait_promoted(self, dead, timeout=30):
        """Waits until no slot is served by the dead node any more (its replica took over)."""
        def promoted():
            for lo, hi, master, *_ in self.live()[0].call("CLUSTER", "SLOTS"):
                if int(master[1]) == dead.port:
                    return False
            return all("cluster_state:ok" in n.call("CLUSTER", "INFO") for n in self.live())
        harness.wait_until(promoted, timeout, "a replica of %r promoted" % dead, interval=0.1)

    def move_slot(self, slot, dst, keys_per_batch=100):
        """Migrates one slot, with its keys, to dst by hand (CLUSTER SETSLOT + MIGRATE)."""
        src = self.master_of_slot(slot)
        if src is dst:
            return
        src_id, dst_id = self.node_id(src), self.node_id(dst)
        dst.call("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.call("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        self.migrate_keys(slot, src, dst, keys_per_batch)
        self.finish_move(slot, src, dst)

    def begin_move(self, slot, dst):
        """The first half of a migration: slot IMPORTING on dst, MIGRATING on its master."""
        src = self.master_of_slot(slot)
        dst.call("CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(src))
        src.call("CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(dst))
        return src

    def migrate_keys(self, slot, src, dst, batch=100):
        while True:
            keys = src.call("CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not keys:
                return
            src.call("MIGRATE", self.ip, dst.port, "", 0, 5000, "KEYS", *keys)

    def finish_move(self, slot, src, dst):
        dst_id = self.node_id(dst)
        for n in (dst, src):
            n.call("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        for n in self.masters():
            if n not in (src, dst):
                with contextlib.suppress(harness.RedisError):
                    n.call("CLUSTER", "SETSLOT", slot, "NODE", dst_id)


def keys_per_master(cluster):
    """{node: DBSIZE} of every live master."""
    return {n: int(n.call("DBSIZE")) for n in cluster.masters()}


def redis_cli_available():
    return shutil.which("redis-cli") is not None and shutil.which("redis-server") is not None




def _crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xffff if crc & 0x8000 else (crc << 1) & 0xffff
    return crc


def key_slot(key):
    k = key.encode() if isinstance(key, str) else bytes(key)
    i = k.find(b"{")
    if i >= 0:
        j = k.find(b"}", i + 1)
        if j > i + 1:
            k = k[i + 1:j]
    return _crc16(k) % 16384


class ClusterClient:
    """What a test's direct Redis calls need on a cluster (Stack.redis when the harness runs on a
    cluster): a command with a key goes to its slot's master (MOVED followed); KEYS, DBSIZE and
    PUBSUB CHANNELS/SHARDCHANNELS gather every master's answer; FLUSHALL, CLIENT (PAUSE, KILL:
    the whole of Redis, as on one server) and SCRIPT LOAD/FLUSH go to every master; anything else
    to one master."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.ranges = None     # [(first slot, last slot, master Node)], from CLUSTER SLOTS

    def _refresh(self):
        node = self.cluster.live()[0]
        self.ranges = [(lo, hi, self.cluster.node_at(int(m[1])))
                       for lo, hi, m, *_ in node.call("CLUSTER", "SLOTS")]

    def _masters(self):
        if self.ranges is None:
            self._refresh()
        seen = []
        for _, _, n in self.ranges:
            if n not in seen:
                seen.append(n)
        return seen

    def _master_of(self, slot):
        if self.ranges is None:
            self._refresh()
        for lo, hi, n in self.ranges:
            if lo <= slot <= hi:
                return n
        raise harness.RedisError("slot %d has no master" % slot)

    @staticmethod
    def _key(args):
        name = str(args[0]).upper()
        if name in ("EVALSHA", "EVAL"):
            return args[3] if len(args) > 3 and int(args[2]) > 0 else None
        if name in ("XINFO", "MEMORY", "OBJECT") and len(args) > 2:   # <sub> key
            return args[2]
        if name in ("PING", "TIME", "INFO", "PUBLISH", "SCRIPT", "CONFIG", "ROLE", "CLUSTER",
                    "SUBSCRIBE", "ECHO", "PUBSUB") or len(args) < 2:
            return None
        return args[1]

    def call(self, *args, raw=False):
        for attempt in range(5):
            try:
                return self._call(args, raw)
            except (OSError, ConnectionError):   # a node killed by the test: the map again
                self.ranges = None
                if attempt == 4:
                    raise
                time.sleep(0.2)

    def _call(self, args, raw):
        name = str(args[0]).upper()
        masters = self._masters()
        if name == "KEYS" or (name == "PUBSUB" and len(args) > 1 and
                              str(args[1]).upper() in ("CHANNELS", "SHARDCHANNELS")):
            return [k for m in masters for k in m.client.call(*args, raw=raw)]
        if name == "DBSIZE":
            return sum(int(m.client.call(*args)) for m in masters)
        if name in ("FLUSHALL", "FLUSHDB", "CLIENT") or \
                (name == "SCRIPT" and str(args[1]).upper() in ("LOAD", "FLUSH")):
            return [m.client.call(*args, raw=raw) for m in masters][0]
        key = self._key(args)
        node = masters[0] if key is None else self._master_of(key_slot(key))
        for _ in range(5):
            try:
                return node.client.call(*args, raw=raw)
            except harness.RedisError as e:
                msg = str(e)
                if not msg.startswith("MOVED "):
                    raise
                self.ranges = None
                node = self.cluster.node_at(int(msg.rsplit(":", 1)[1]))
        raise harness.RedisError("too many redirections for %r" % (args,))

    def pipeline(self, cmds, raw=False):
        out = []
        for c in cmds:
            try:
                out.append(self.call(*c, raw=raw))
            except harness.RedisError as e:
                out.append(e)
        return out

    def close(self):
        pass
