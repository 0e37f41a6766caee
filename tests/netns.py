"""netns.py — private networks of "hosts" for the tests, made of Linux network namespaces
(`ip netns`): a hub namespace holding a bridge (and an address of its own, for servers every host
reaches, such as a Redis Cluster), and one namespace per host, joined to the bridge by a veth pair.
Every address lives inside these namespaces only: the machine's own network is not touched. Owns
the namespaces and links it makes, and removes them by name: on close(), at the harness's exit
(also on SIGTERM/SIGINT), and — for those of a test run that was killed — at the next start.

    with Network(("a", "b")) as net:
        net.ns("a"), net.ip("a")        # "jgh1234-5f3e-a", "10.77.0.2"
        net.hub, net.hub_ip             # the bridge's namespace and its address, 10.77.0.1
        harness.Stack(netns=net.ns("a"), ...)

Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); without it the constructor raises NetnsUnavailable,
an AssertionError, so that a test needing it fails loudly instead of passing unseen.
"""

import os
import re
import shutil
import subprocess

import harness

SUBNET = "10.77.0"           # private: it exists only inside the namespaces made here
_PREFIX = "jgh"              # jgh<pid of the test run>-<4 hex>-<name>
_NAME = re.compile(r"^%s(\d+)-[0-9a-f]{4}-[a-z0-9]+$" % _PREFIX)


class NetnsUnavailable(AssertionError):
    """Network namespaces cannot be made here (not root, no CAP_SYS_ADMIN, no `ip`)."""


def _ip(*args, check=True):
    p = subprocess.run(["ip"] + list(args), capture_output=True, timeout=30)
    if check and p.returncode != 0:
        raise harness.HarnessError("ip %s: exit %d: %s" % (" ".join(args), p.returncode,
                                                           p.stderr.decode().strip()))
    return p


def list_namespaces():
    """Names of every network namespace `ip netns` knows."""
    p = _ip("netns", "list", check=False)
    return [ln.split()[0] for ln in p.stdout.decode().splitlines() if ln.strip()]


def links(ns):
    """Names of the links inside namespace ns."""
    p = _ip("-n", ns, "-o", "link", "show", check=False)
    return [ln.split(":")[1].strip().split("@")[0] for ln in p.stdout.decode().splitlines()
            if ln.count(":") >= 2]


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_stale():
    """Removes the namespaces (and their links) of test runs whose process is gone (a run
    killed with -9 cannot clean up after itself). Another run's live namespaces are left alone."""
    for name in list_namespaces():
        m = _NAME.match(name)
        if m and not _pid_alive(int(m.group(1))):
            _remove(name)


def _remove(ns):
    """Deletes every link made in ns (veth ends, bridge), then ns itself."""
    for link in links(ns):
        if link != "lo":
            _ip("-n", ns, "link", "del", link, check=False)
    _ip("netns", "del", ns, check=False)


class Network:
    """A hub namespace with a bridge, and one namespace per host name on it."""

    def __init__(self, hosts=("a", "b")):
        if shutil.which("ip") is None:
            raise NetnsUnavailable("cannot run: no `ip` command (Debian package iproute2)")
        sweep_stale()
        self.tag = "%s%d-%s" % (_PREFIX, os.getpid(), os.urandom(2).hex())
        self.hosts = tuple(hosts)
        self.hub = self.tag + "-hub"
        self.hub_ip = SUBNET + ".1"
        # the links made: a bridge in the hub; per host a veth pair, eth0 in the host's namespace
        # and v-<host> in the hub's, on the bridge
        self.link_names = ("br0", "eth0") + tuple("v-" + h for h in self.hosts)
        self.made = []            # namespaces made so far, removed by close()
        self.closed = False
        harness.at_cleanup(self.close)
        try:
            self._make(self.hub)
        except harness.HarnessError as e:
            self.close()
            raise NetnsUnavailable("cannot run: `ip netns add` failed (needs root with "
                                   "CAP_SYS_ADMIN and CAP_NET_ADMIN): %s" % e)
        try:
            _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.hub, "addr", "add", self.hub_ip + "/24", "dev", "br0")
            _ip("-n", self.hub, "link", "set", "br0", "up")
            for h in self.hosts:
                ns = self.ns(h)
                self._make(ns)
                # both ends made inside namespaces: no link ever exists in the machine's own one
                peer = "v-" + h
                _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", peer,
                    "netns", self.hub)
                _ip("-n", self.hub, "link", "set", peer, "master", "br0")
                _ip("-n", self.hub, "link", "set", peer, "up")
                _ip("-n", ns, "addr", "add", self.ip(h) + "/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
        except BaseException:
            self.close()
            raise

    def _make(self, ns):
        _ip("netns", "add", ns)
        self.made.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def ns(self, host):
        """The namespace of host."""
        if host not in self.hosts:
            raise KeyError(host)
        return "%s-%s" % (self.tag, host)

    def ip(self, host):
        """host's address on the bridge (10.77.0.2, .3, ...)."""
        return "%s.%d" % (SUBNET, 2 + self.hosts.index(host))

    def inode(self, host):
        """The inode of host's namespace: a process runs on host when /proc/PID/ns/net names it."""
        return os.stat("/run/netns/" + self.ns(host)).st_ino

    def close(self):
        """Removes every link and namespace made (host namespaces first: their veth ends take
        the hub's with them). Returns what is left of them (empty when all went)."""
        if not self.closed:
            self.closed = True
            for ns in reversed(self.made):
                _remove(ns)
        left = [n for n in list_namespaces() if n.startswith(self.tag + "-")]
        return left

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.close()
        return False
