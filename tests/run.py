#!/usr/bin/env python3
"""run.py — runs every jobgate test: the C unit tests ($JOBGATE_BUILD/unit-tests), then every
top-level test_* function of tests/test_*.py in file order, against real stacks started by
tests/harness.py. Prints `ok - module.test` or `FAIL - module.test: why` per test and ends with
the line `N passed, N failed`; exits 1 on any failure.

Passes: every test runs behind nginx on one redis-server per stack. The tests of a module that
declares `FRONTS = harness.FRONTS` (the HTTP suites) run a second time behind Apache, named
`apache:module.test`, and a third time behind nginx on a Redis Cluster (3 masters, 3 replicas,
tests/cluster.py), named `cluster:module.test`; so do those of a module that declares
`REDIS = harness.REDIS_KINDS` (the worker suites). Apache on the cluster is not a pass: the front
and the Redis kind are independent (the front never talks to Redis). A test of an HTTP suite
that is not about the front (straight to FastCGI, CGI, flags) says so with
@harness.front_independent and is not run behind Apache; a test that cannot run on a cluster (it
restarts the one Redis) says so, with the reason, with @harness.single_redis_only(reason).
Output is in that order: unit tests, the nginx pass, the Apache pass, the cluster pass, each in
file order.

Shards: the work is cut into units (one module in one pass) run by JOBGATE_TEST_JOBS (default 4;
or -jN) worker processes of this script at once, each with its own stacks, ports, temp dirs and
cluster; units go longest first, by the durations recorded in $JOBGATE_BUILD/test-durations.json
(written after every run without a filter) or else in tests/durations.json. Each unit's output is
held back and printed whole, in the order above, so the output reads as a serial run's does;
`# pass:module: N tests in S s` lines say where the time goes. -j1 runs everything in this
process, one unit after the other.

    python3 tests/run.py              # everything
    python3 tests/run.py status       # only tests whose [pass:]module.name contains "status"
    python3 tests/run.py apache:      # only the Apache pass (cluster: the cluster pass)
    python3 tests/run.py -j1 worker   # the worker suites, serially
    JOBGATE_BUILD=build-san python3 tests/run.py
    make test                         # the same as the first line (make test SANITIZE=1: ASan)
    make test FILTER="cluster:status worker_faults"   # filters through make

JOBGATE_REDIS=cluster makes the cluster the default Redis of every pass, as JOBGATE_FRONT=apache
makes Apache the default front (for a test module run by hand); run.py's passes set both.
JOBGATE_TEST_TIMEOUT (default 120) bounds each test in seconds; JOBGATE_KEEP_TMP=1 keeps the
stacks' temp dirs (logs) even when all is well.
"""

import importlib
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

TIMEOUT = int(os.environ.get("JOBGATE_TEST_TIMEOUT", "120"))
# (front, Redis kind) of each pass, in the order they are reported; the prefix of their names
PASSES = (("nginx", "single"), ("apache", "single"), ("nginx", "cluster"))
PASS_PREFIX = {("nginx", "single"): "", ("apache", "single"): "apache:",
               ("nginx", "cluster"): "cluster:"}
DURATIONS = os.path.join(HERE, "durations.json")
RECORDED = os.path.join(harness.BUILD, "test-durations.json")
DEFAULT_SECONDS = 30       # a unit not recorded yet (a new module) is guessed to take this long
END = "#@@end "             # a worker's line that closes one unit's output (never printed)


class TestTimeout(BaseException):
    """Raised in the test's thread by SIGALRM (BaseException so that `except Exception` in a test
    cannot swallow it)."""


def _alarm(signum, frame):
    raise TestTimeout("test still running after %d s" % TIMEOUT)


def run_unit(filters):
    """Runs the C unit tests; returns (passed, failed)."""
    path = os.path.join(harness.BUILD, "unit-tests")
    # with filters, the unit tests run only for a filter like "unit" or "unit.json"
    if filters and not any(f.startswith("unit") or f in "unit" for f in filters):
        return 0, 0

    def wanted(name):
        return not filters or any(f in "unit." + name for f in filters)
    if not os.access(path, os.X_OK):
        print("FAIL - unit: %s is not built" % path, flush=True)
        return 0, 1
    env = dict(os.environ)
    env.update(harness.SAN_ENV)
    try:
        p = subprocess.run([path], capture_output=True, timeout=TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        print("FAIL - unit: unit-tests still running after %d s" % TIMEOUT, flush=True)
        return 0, 1
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    passed = failed = 0
    summary = None
    for line in out.splitlines():
        if line.startswith("ok - "):
            if wanted(line[5:]):
                passed += 1
                print("ok - unit." + line[5:], flush=True)
        elif line.startswith("not ok - "):
            if wanted(line[9:].split(":")[0]):
                failed += 1
                print("FAIL - unit." + line[9:], flush=True)
        else:
            m = re.match(r"^(\d+) passed, (\d+) failed$", line.strip())
            if m:
                summary = (int(m.group(1)), int(m.group(2)))
            elif line.strip():
                print("# unit: " + line, flush=True)
    if summary is not None and not filters and summary != (passed, failed):
        print("FAIL - unit: summary says %d passed, %d failed; counted %d passed, %d failed"
              % (summary + (passed, failed)), flush=True)
        failed += 1
    if p.returncode != 0 and failed == 0:
        print("FAIL - unit: unit-tests exited %d; stderr:\n%s" % (p.returncode, err[-3000:]),
              flush=True)
        failed += 1
    hits = [pat for pat in harness.SAN_PATTERNS if pat in err]
    if hits:
        print("FAIL - unit: sanitizer report:\n%s" % err[-4000:], flush=True)
        failed += 1
    if summary is None and passed + failed == 0:
        print("FAIL - unit: no results from unit-tests", flush=True)
        failed += 1
    return passed, failed


def module_passes(mod, module_fronts):
    """The Redis kinds a module's tests run on: its REDIS, else both for an HTTP suite (FRONTS =
    harness.FRONTS) and one redis-server for the others."""
    default = harness.REDIS_KINDS if tuple(module_fronts) == tuple(harness.FRONTS) else ("single",)
    return tuple(getattr(mod, "REDIS", default))


def discover(filters):
    """(pass, module name, function name, function, import error) for every test, in the order
    they are reported: every module's tests of the first pass in file order, then the next
    pass's."""
    tests = []
    for fn in sorted(os.listdir(HERE)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        modname = fn[:-3]
        try:
            mod = importlib.import_module(modname)
        except Exception:
            tests.append((PASSES[0], modname[5:], "<import>", None, traceback.format_exc()))
            continue
        module_fronts = getattr(mod, "FRONTS", ("nginx",))
        module_kinds = module_passes(mod, module_fronts)
        funcs = [(n, f) for n, f in vars(mod).items()
                 if n.startswith("test_") and inspect.isfunction(f) and f.__module__ == modname]
        funcs.sort(key=lambda nf: nf[1].__code__.co_firstlineno)
        for n, f in funcs:
            fronts = getattr(f, "fronts", module_fronts)
            kinds = getattr(f, "redis_kinds", module_kinds)
            for ps in PASSES:
                if ps[0] not in fronts or ps[1] not in kinds:
                    continue
                if filters and not any(x in full_name(ps, modname[5:], n[5:]) for x in filters):
                    continue
                tests.append((ps, modname[5:], n[5:], f, None))
    order = {ps: i for i, ps in enumerate(PASSES)}
    tests.sort(key=lambda t: order[t[0]])    # stable: file order within each pass
    return tests


def full_name(ps, mod, name):
    """The name a test is reported under: module.test on the first pass, apache:module.test
    behind Apache, cluster:module.test on the cluster."""
    return "%s%s.%s" % (PASS_PREFIX[ps], mod, name)


def units_of(filters):
    """The units of work in report order: ("unit",) for the C unit tests, then (pass, module,
    [tests]) for each module in each pass."""
    units = [("unit",)]
    for t in discover(filters):
        ps, mod = t[0], t[1]
        if len(units) > 1 and units[-1][0] == ps and units[-1][1] == mod:
            units[-1][2].append(t)
        else:
            units.append((ps, mod, [t]))
    return units


def unit_name(unit):
    return "unit" if unit[0] == "unit" else "%s%s" % (PASS_PREFIX[unit[0]] or "nginx:", unit[1])


def run_tests(tests):
    """Runs tests (discover()'s tuples) in this process; returns (passed, failed)."""
    passed = failed = 0
    for ps, mod, name, func, import_error in tests:
        full = full_name(ps, mod, name)
        was = (harness.FRONT, harness.REDIS_KIND)
        for p in harness.set_pass(*ps):
            failed += 1
            print("FAIL - harness.stop (%s front, %s Redis pass): %s" % (was + (p,)), flush=True)
        if func is None:
            failed += 1
            print("FAIL - %s: cannot import:\n%s" % (mod, import_error), flush=True)
            continue
        started = time.monotonic()
        err = None
        signal.alarm(TIMEOUT)
        try:
            harness.before_test()
            func()
        except AssertionError as e:
            err = str(e) or "assertion failed\n" + traceback.format_exc()
        except TestTimeout as e:
            err = "%s\n%s" % (e, traceback.format_exc())
        except Exception:
            err = "unexpected error:\n" + traceback.format_exc()
        finally:
            signal.alarm(0)
        try:
            problems = harness.after_test()
        except Exception:
            problems = ["after_test: " + traceback.format_exc()]
        if problems:
            err = ((err + "\n") if err else "") + "\n".join(problems)
        took = time.monotonic() - started
        if err is None:
            passed += 1
            print("ok - %s" % full, flush=True)
            if took > 5:
                print("# %s took %.1f s" % (full, took), flush=True)
        else:
            failed += 1
            print("FAIL - %s: %s" % (full, err.rstrip()), flush=True)
    if tests:
        failed += _stop(harness.after_module, "stopping the module's stacks",
                        "harness.stop (after %s%s)" % (PASS_PREFIX[tests[0][0]], tests[0][1]))
    return passed, failed


def _stop(stop, what, label):
    """Runs stop() (a harness call that returns the problems it found) within the test timeout;
    prints each problem as a failure named label; returns how many."""
    signal.alarm(TIMEOUT)
    try:
        problems = stop()
    except TestTimeout:
        problems = ["%s took more than %d s" % (what, TIMEOUT)]
    finally:
        signal.alarm(0)
    for p in problems:
        print("FAIL - %s: %s" % (label, p), flush=True)
    return len(problems)


def run_one(unit, filters):
    """Runs one unit here; returns (passed, failed)."""
    if unit[0] == "unit":
        return run_unit(filters)
    return run_tests(unit[2])


def finish():
    """Stops every stack (and the cluster) this process started; returns the failures."""
    failed = _stop(harness.stop_all, "stopping the stacks", "harness.stop")
    harness.kill_everything()
    return failed


# ---- shards ------------------------------------------------------------------------------------

def worker_main(filters):
    """A shard: reads unit numbers on stdin, runs each, and closes its output with an END line
    (passed, failed, seconds); at the end of stdin stops everything and exits."""
    units = units_of(filters)
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        i = int(line)
        t0 = time.monotonic()
        passed, failed = run_one(units[i], filters)
        print("%s%d %d %d %.2f" % (END, i, passed, failed, time.monotonic() - t0), flush=True)
    failed = finish()
    print("%s-1 0 %d 0" % (END, failed), flush=True)
    return 0


def load_durations():
    for path in (RECORDED, DURATIONS):
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            continue
    return {}


def save_durations(measured):
    """Writes the measured seconds per unit to $JOBGATE_BUILD/test-durations.json."""
    try:
        with open(RECORDED + ".tmp", "w") as f:
            json.dump(dict(sorted(measured.items())), f, indent=1)
            f.write("\n")
        os.replace(RECORDED + ".tmp", RECORDED)
    except OSError as e:
        print("# cannot record the durations in %s: %s" % (RECORDED, e), flush=True)


def _worker_setup():
    # in the worker between fork and exec: SIGTERM when this runner dies (the worker then stops
    # everything it started, harness.install_signal_handlers)
    if harness._prctl is not None:
        harness._prctl(1, int(signal.SIGTERM))


class Shard:
    """A worker process of this script (worker_main) and the thread that feeds it units."""

    def __init__(self, n, filters):
        self.n = n
        self.filters = filters
        self.proc = None

    def start(self):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker"] + self.filters,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
            preexec_fn=_worker_setup)

    def run(self, i):
        """Runs unit i on the worker; returns (lines, passed, failed, seconds)."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        lines = []
        try:
            self.proc.stdin.write(b"%d\n" % i)
            self.proc.stdin.flush()
        except OSError:
            pass
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace")
            if line.startswith(END):
                _, passed, failed, secs = line[len(END):].split()
                return lines, int(passed), int(failed), float(secs)
            lines.append(line)
        rc = self.proc.wait()
        self.proc = None
        lines.append("FAIL - shard %d: its worker exited with %s in the middle of this module\n"
                     % (self.n, rc))
        return lines, 0, 1, 0.0

    def close(self):
        """Ends the worker (it stops its stacks); returns (lines, failed)."""
        if self.proc is None:
            return [], 0
        lines, failed = [], 0
        with_end = False
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace")
            if line.startswith(END):
                failed += int(line[len(END):].split()[2])
                with_end = True
                continue
            lines.append(line)
        rc = self.proc.wait()
        if not with_end or rc != 0:
            lines.append("FAIL - shard %d: its worker exited with %s while stopping\n"
                         % (self.n, rc))
            failed += 1
        return lines, failed


def run_sharded(units, jobs, filters):
    """Runs units on jobs worker processes, longest first, printing each unit's output in report
    order as soon as it and all before it are done. Returns (passed, failed, seconds per unit)."""
    durations = load_durations()
    # the C unit tests first (a few seconds, and the first of the output), then longest first
    todo = sorted(range(len(units)), key=lambda i: (
        units[i][0] != "unit", -durations.get(unit_name(units[i]), DEFAULT_SECONDS)))
    done = {}
    lock = threading.Condition()
    shards = [Shard(n + 1, filters) for n in range(min(jobs, len(units)))]
    closing = {}

    def feed(shard):
        while True:
            with lock:
                if not todo:
                    break
                i = todo.pop(0)
            try:
                result = shard.run(i)
            except Exception:
                result = (["FAIL - shard %d: %s" % (shard.n, traceback.format_exc())], 0, 1, 0.0)
            with lock:
                done[i] = result + (shard.n,)
                lock.notify_all()
        closing[shard.n] = shard.close()
        with lock:
            lock.notify_all()

    for s in shards:
        s.start()
    threads = [threading.Thread(target=feed, args=(s,), daemon=True) for s in shards]
    for t in threads:
        t.start()
    passed = failed = 0
    seconds = {}
    for i in range(len(units)):
        with lock:
            while i not in done:
                lock.wait()
            lines, p, f, secs, n = done.pop(i)
        sys.stdout.write("".join(lines))
        passed += p
        failed += f
        seconds[unit_name(units[i])] = round(secs, 1)
        if units[i][0] != "unit":
            print("# %s: %d tests in %.1f s (shard %d)" % (unit_name(units[i]), len(units[i][2]),
                                                           secs, n), flush=True)
    for t in threads:
        t.join()
    for n in sorted(closing):
        lines, f = closing[n]
        sys.stdout.write("".join(lines))
        failed += f
    sys.stdout.flush()
    return passed, failed, seconds


def main(argv):
    filters = [a for a in argv if not a.startswith("-")]
    if "--worker" in argv:
        harness.install_signal_handlers()
        signal.signal(signal.SIGALRM, _alarm)
        return worker_main(filters)
    jobs = int(os.environ.get("JOBGATE_TEST_JOBS", "4"))
    for a in argv:
        if re.match(r"^-j\d+$", a):
            jobs = int(a[2:])
    t0 = time.monotonic()
    units = units_of(filters)
    if jobs <= 1:
        harness.install_signal_handlers()
        signal.signal(signal.SIGALRM, _alarm)
        passed = failed = 0
        for u in units:
            p, f = run_one(u, filters)
            passed, failed = passed + p, failed + f
        failed += finish()
    else:
        passed, failed, seconds = run_sharded(units, jobs, filters)
        if not filters:
            save_durations(seconds)
    print("# %.1f s" % (time.monotonic() - t0), flush=True)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
