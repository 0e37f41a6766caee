#!/usr/bin/env python3
"""run.py — runs every jobgate test: first the C unit tests ($JOBGATE_BUILD/unit-tests), then
every top-level test_* function of tests/test_*.py in file order, against real stacks started by
tests/harness.py. Prints `ok - module.test` or `FAIL - module.test: why` per test and ends with
the line `N passed, N failed`; exits 1 on any failure.

Front ends: every test runs behind nginx; the tests of a module that declares
`FRONTS = harness.FRONTS` (the HTTP suites) run a second time behind Apache, after all the nginx
ones, named `apache:module.test`. A test of such a module that is not about the front (straight
to FastCGI, CGI, flags) says so with @harness.front_independent and runs once.

    python3 tests/run.py              # everything
    python3 tests/run.py status       # only tests whose [front:]module.name contains "status"
    python3 tests/run.py apache:      # only the Apache pass
    JOBGATE_BUILD=build-san python3 tests/run.py

JOBGATE_REDIS=cluster runs every stack on a private Redis Cluster (3 masters, 3 replicas,
tests/cluster.py) instead of one redis-server, as JOBGATE_FRONT picks the front end; a test that
stops or restarts Redis fails there (the harness says so).

JOBGATE_TEST_TIMEOUT (default 120) bounds each test in seconds; JOBGATE_KEEP_TMP=1 keeps the
stacks' temp dirs (logs) even when all is well.
"""

import importlib
import inspect
import os
import re
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

TIMEOUT = int(os.environ.get("JOBGATE_TEST_TIMEOUT", "120"))


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


def discover(filters):
    """(front, module name, function name, function, import error) for every test: every
    module's tests behind nginx in file order, then those that run behind Apache too."""
    tests = []
    for fn in sorted(os.listdir(HERE)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        modname = fn[:-3]
        try:
            mod = importlib.import_module(modname)
        except Exception:
            tests.append(("nginx", modname, "<import>", None, traceback.format_exc()))
            continue
        module_fronts = getattr(mod, "FRONTS", ("nginx",))
        funcs = [(n, f) for n, f in vars(mod).items()
                 if n.startswith("test_") and inspect.isfunction(f) and f.__module__ == modname]
        funcs.sort(key=lambda nf: nf[1].__code__.co_firstlineno)
        for n, f in funcs:
            for front in getattr(f, "fronts", module_fronts):
                if filters and not any(x in full_name(front, modname[5:], n[5:]) for x in filters):
                    continue
                tests.append((front, modname[5:], n[5:], f, None))
    order = {front: i for i, front in enumerate(harness.FRONTS)}
    tests.sort(key=lambda t: order[t[0]])    # stable: file order within each front
    return tests


def full_name(front, mod, name):
    """The name a test is reported under: module.test behind nginx, apache:module.test behind
    Apache."""
    return ("%s.%s" % (mod, name)) if front == "nginx" else ("%s:%s.%s" % (front, mod, name))


def main(argv):
    filters = [a for a in argv if not a.startswith("-")]
    harness.install_signal_handlers()
    signal.signal(signal.SIGALRM, _alarm)
    t0 = time.monotonic()
    passed, failed = run_unit(filters)

    for front, mod, name, func, import_error in discover(filters):
        full = full_name(front, mod, name)
        if front != harness.FRONT:
            previous = harness.FRONT
            for p in harness.set_front(front):
                failed += 1
                print("FAIL - harness.stop (%s pass): %s" % (previous, p), flush=True)
        if func is None:
            failed += 1
            print("FAIL - %s: cannot import:\n%s" % (mod, import_error), flush=True)
            continue
        started = time.monotonic()
        err = None
        signal.alarm(TIMEOUT)
        try:
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

    signal.alarm(TIMEOUT)
    try:
        problems = harness.stop_all()
    except TestTimeout:
        problems = ["stopping the stacks took more than %d s" % TIMEOUT]
    finally:
        signal.alarm(0)
    for p in problems:
        failed += 1
        print("FAIL - harness.stop: %s" % p, flush=True)
    harness.kill_everything()
    print("# %.1f s" % (time.monotonic() - t0), flush=True)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
