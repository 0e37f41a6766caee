"""`make install`: every file where it belongs, with PREFIX written into the paths the files name,
man pages that render cleanly, systemd units that name the installed paths, and the installed
spawn-fcgi run script serving FastCGI requests for real (contract section 11)."""

import contextlib
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile

import harness
from harness import check, eq

PREFIX = "/usr"
WEB_PROGRAMS = ("submit", "status", "logs", "cache", "admin")

_dest = None   # DESTDIR of the install() in progress


def _make_args():
    """make variables that select the build the suite runs on (JOBGATE_BUILD)."""
    build = os.path.basename(harness.BUILD)
    if build == "build-san":
        return ["SANITIZE=1"]
    if build == "build":
        return []
    return ["BUILD=" + harness.BUILD]   # the full path: make must not build elsewhere


@contextlib.contextmanager
def install(name="install"):
    """Runs `make install DESTDIR=<dir> PREFIX=/usr` into a private stack's temp dir (so that the
    harness removes it however the run ends) and yields that stack (not started: a test may
    start its Redis)."""
    global _dest
    with harness.Stack(programs=(), start=False, name=name) as s:
        d = os.path.join(s.dir, "dest")
        os.mkdir(d)
        os.chmod(d, 0o755)   # the installed programs run as JOBGATE_USER (www-data) below
        p = subprocess.run(["make", "-s", "-C", harness.ROOT, "install", "DESTDIR=" + d,
                            "PREFIX=" + PREFIX] + _make_args(),
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise AssertionError("make install DESTDIR=%s PREFIX=%s: expected exit 0, got %d:\n%s%s"
                                 % (d, PREFIX, p.returncode, p.stdout[-2000:], p.stderr[-3000:]))
        _dest = d
        try:
            yield s
        finally:
            _dest = None


def path(*parts):
    """A path under DESTDIR: path("/usr/bin", "jobgate-submit")."""
    return os.path.join(_dest, *[p.lstrip("/") for p in parts])


def built_programs():
    return sorted(n for n in os.listdir(harness.BUILD)
                  if n.startswith("jobgate-") and os.access(os.path.join(harness.BUILD, n), os.X_OK)
                  and os.path.isfile(os.path.join(harness.BUILD, n)))


def mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def read(p):
    with open(p, encoding="utf-8") as f:
        return f.read()


def unit_values(text, key):
    return [m.group(1).strip() for m in re.finditer(r"^%s=(.*)$" % re.escape(key), text, re.M)]


def test_install_puts_every_file_where_it_belongs():
    with install():
        progs = built_programs()
        check("jobgate-submit" in progs and "jobgate-worker" in progs,
              "expected the programs in %s" % harness.BUILD, progs)
        for prog in progs:
            p = path(PREFIX, "bin", prog)
            check(os.path.isfile(p), "expected %s installed as %s" % (prog, p))
            eq(mode(p), 0o755, "mode of %s" % p)
            p = path(PREFIX, "share/man/man1", prog + ".1")
            check(os.path.isfile(p), "expected a man page for %s at %s (write man/%s.1)"
                  % (prog, p, prog))
        expected = {
            "lib/jobgate/jobgate-fcgi.sh": 0o755,
            "lib/systemd/system/jobgate@.service": 0o644,
            "lib/systemd/system/jobgate-worker.service": 0o644,
            "share/jobgate/nginx/jobgate.conf": 0o644,
            "share/jobgate/nginx/jobgate-upstreams.conf": 0o644,
            "share/jobgate/examples/jobgate.env": 0o644,
            "share/jobgate/examples/worker.conf": 0o644,
            "share/jobgate/www/index.html": 0o644,
            "share/jobgate/www/jobgate.js": 0o644,
            "share/jobgate/www/dashboard/index.html": 0o644,
            "share/jobgate/www/dashboard/dashboard.js": 0o644,
            "share/man/man7/jobgate.7": 0o644,
        }
        for t in harness.DEMO_TYPES:
            expected["share/jobgate/examples/jobs/%s.sh" % t] = 0o755
        for name in os.listdir(os.path.join(harness.ROOT, "apache")):
            if name.endswith(".conf"):
                expected["share/jobgate/apache/" + name] = 0o644
        for rel, m in expected.items():
            p = path(PREFIX, rel)
            check(os.path.isfile(p), "expected %s installed" % p)
            eq(mode(p), m, "mode of %s" % p)

        # The shipped files name /usr/local/...: installed with PREFIX=/usr, none of it is left,
        # and nothing else changed.
        for rel in expected:
            if rel.startswith("share/jobgate/examples/jobs/"):
                continue
            text = read(path(PREFIX, rel))
            check("/usr/local/" not in text, "expected no /usr/local/ left in %s (PREFIX=%s)"
                  % (rel, PREFIX), [ln for ln in text.splitlines() if "/usr/local/" in ln][:3])
        for src, rel in (("nginx/jobgate.conf", "share/jobgate/nginx/jobgate.conf"),
                         ("nginx/jobgate-upstreams.conf", "share/jobgate/nginx/jobgate-upstreams.conf"),
                         ("apache/jobgate.conf", "share/jobgate/apache/jobgate.conf")):
            eq(read(path(PREFIX, rel)), read(os.path.join(harness.ROOT, src)).replace(
                "/usr/local/", PREFIX + "/"), "installed %s vs the shipped one, PREFIX written in" % rel)
        for t in harness.DEMO_TYPES:
            eq(read(path(PREFIX, "share/jobgate/examples/jobs/%s.sh" % t)),
               read(os.path.join(harness.JOBS_DIR, t + ".sh")), "installed demo job %s.sh" % t)
        script = read(path(PREFIX, "lib/jobgate/jobgate-fcgi.sh"))
        check("BINDIR=${JOBGATE_BINDIR:-%s/bin}" % PREFIX in script,
              "expected the installed jobgate-fcgi.sh to look for the programs in %s/bin" % PREFIX)
def test_installed_man_pages_render_without_warnings():
    with install():
        pages = [path(PREFIX, "share/man", sec, n) for sec in ("man1", "man7")
                 for n in sorted(os.listdir(path(PREFIX, "share/man", sec)))]
        check(len(pages) >= 6, "expected at least 6 man pages", pages)
        have_groff = shutil.which("groff") is not None
        have_man = shutil.which("man") is not None
        for page in pages:
            name = os.path.basename(page)
            if have_groff:
                p = subprocess.run(["groff", "-ww", "-man", "-z", page], capture_output=True, text=True,
                                   timeout=30)
                eq((p.returncode, p.stderr), (0, ""), "groff -ww -man -z %s: exit status and warnings"
                   % name)
            if have_man:
                env = dict(os.environ, MANWIDTH="80", MAN_DISABLE_SECCOMP="1", LC_ALL="C.UTF-8")
                env.pop("MANPAGER", None)
                env.pop("PAGER", None)
                p = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True,
                                   timeout=30, env=env)
                eq((p.returncode, p.stderr), (0, ""), "man -l %s: exit status and warnings" % name)
                title = name.rsplit(".", 1)[0].upper()
                check(p.stdout.lstrip().startswith(title) and "NAME" in p.stdout,
                      "expected man -l %s to render a page titled %s with a NAME section" % (name, title),
                      p.stdout[:200])
def test_installed_units_name_the_installed_paths():
    with install():
        unitdir = path(PREFIX, "lib/systemd/system")
        web = read(os.path.join(unitdir, "jobgate@.service"))
        worker = read(os.path.join(unitdir, "jobgate-worker.service"))

        eq(unit_values(web, "ExecStart"), ["%s/lib/jobgate/jobgate-fcgi.sh %%i" % PREFIX],
           "jobgate@.service ExecStart")
        eq(unit_values(worker, "ExecStart"),
           ["%s/bin/jobgate-worker --config /etc/jobgate/worker.conf" % PREFIX],
           "jobgate-worker.service ExecStart")
        for name, text in (("jobgate@.service", web), ("jobgate-worker.service", worker)):
            eq(unit_values(text, "EnvironmentFile"), ["-/etc/jobgate/jobgate.env"],
               "%s EnvironmentFile" % name)
            eq(unit_values(text, "Restart"), ["on-failure"], "%s Restart" % name)
            eq(unit_values(text, "KillSignal"), ["SIGTERM"], "%s KillSignal" % name)
        # the sockets' directory is the one the shipped nginx upstreams name
        eq(unit_values(web, "RuntimeDirectory"), ["jobgate"], "jobgate@.service RuntimeDirectory")
        check(harness.SHIPPED_SOCKET_DIR == "/run/jobgate/", "expected nginx's upstreams in /run/jobgate/",
              harness.SHIPPED_SOCKET_DIR)
        # stopping takes --grace (5 for the programs; 30 + 5 + up to 10 for the worker)
        check(int(unit_values(web, "TimeoutStopSec")[0].rstrip("s")) > 5,
              "expected jobgate@.service TimeoutStopSec above --grace 5", unit_values(web, "TimeoutStopSec"))
        check(int(unit_values(worker, "TimeoutStopSec")[0].rstrip("s")) > 45,
              "expected jobgate-worker.service TimeoutStopSec above 45 s (grace 30 + 5 + 10)",
              unit_values(worker, "TimeoutStopSec"))
        eq(unit_values(worker, "KillMode"), ["mixed"], "jobgate-worker.service KillMode")

        # systemd's own check, on copies whose paths point into DESTDIR (so that the executables and
        # the man pages of Documentation= are found): any complaint fails
        if shutil.which("systemd-analyze") is None:
            return
        tmp = tempfile.mkdtemp(prefix="jg-units-")
        try:
            names = []
            for unit, instances in (("jobgate@.service", ["jobgate@%s.service" % p for p in WEB_PROGRAMS
                                                           if os.path.exists(path(PREFIX, "bin", "jobgate-" + p))]),
                                    ("jobgate-worker.service", ["jobgate-worker.service"])):
                text = read(os.path.join(unitdir, unit)).replace("=%s/" % PREFIX, "=%s%s/" % (_dest, PREFIX))
                for inst in instances:
                    with open(os.path.join(tmp, inst), "w") as f:
                        f.write(text)
                    names.append(os.path.join(tmp, inst))
            env = dict(os.environ, MANPATH=path(PREFIX, "share/man"), SYSTEMD_LOG_LEVEL="notice")
            p = subprocess.run(["systemd-analyze", "verify"] + names, capture_output=True, text=True,
                               timeout=60, env=env)
            eq((p.returncode, p.stdout + p.stderr), (0, ""), "systemd-analyze verify %s" % " ".join(
                os.path.basename(n) for n in names))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
def _example_env():
    """Every NAME=value of the installed jobgate.env, the commented-out examples included."""
    env = {}
    for line in read(path(PREFIX, "share/jobgate/examples/jobgate.env")).splitlines():
        m = re.match(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            env[m.group(1)] = m.group(2)
    return env


def test_installed_run_script_serves_fastcgi():
    root = os.geteuid() == 0
    user = None
    if root:
        try:
            pwd.getpwnam("www-data")
            user = "www-data"
        except KeyError:
            user = "nobody"
    with install("install-run") as s:
        bindir = path(PREFIX, "bin")
        script = path(PREFIX, "lib/jobgate/jobgate-fcgi.sh")
        s.start_redis()
        redis_url = "redis://127.0.0.1:%d/0" % s.redis_port
        sockdir = os.path.join(s.dir, "run")
        env = {"REDIS_URL": redis_url, "JOBGATE_SOCKET_DIR": sockdir, "JOBGATE_BINDIR": bindir,
               "JOBGATE_THREADS": "2", "JOBGATE_GRACE": str(s.grace)}
        if root and user != "www-data":
            env["JOBGATE_USER"] = user
        procs = {}
        for prog in ("submit", "status"):
            proc = harness.Proc(prog, [script, prog], s.program_env(env),
                                os.path.join(s.dir, "%s.log" % prog))
            s.procs.setdefault(prog, []).append(proc)   # s.stop() stops and checks them
            procs[prog] = proc
        for prog, proc in procs.items():
            sock = os.path.join(sockdir, prog + ".sock")
            program = os.path.join(bindir, "jobgate-" + prog)

            def execd():
                # spawn-fcgi makes the socket, sets its mode and owner, then execs the program:
                # once it has, all of that is done
                with contextlib.suppress(OSError):
                    return os.readlink("/proc/%d/exe" % proc.pid) == program
            harness.wait_until(lambda: execd() or not proc.alive(), 10,
                               "jobgate-%s started on the socket %s" % (prog, sock))
            check(proc.alive(), "expected jobgate-fcgi.sh %s to keep running; log:\n%s"
                  % (prog, proc.log()))
            st = os.stat(sock)
            check(stat.S_ISSOCK(st.st_mode), "expected a socket at %s" % sock)
            eq(stat.S_IMODE(st.st_mode), 0o660, "mode of %s" % sock)
            want_uid = pwd.getpwnam(user).pw_uid if root else os.geteuid()
            eq(st.st_uid, want_uid, "owner of %s" % sock)
            # spawn-fcgi -n execs the program in the script's own process: a supervisor's SIGTERM
            # reaches the program itself
            exe = os.readlink("/proc/%d/exe" % proc.pid)
            eq(exe, program, "the program in pid %d" % proc.pid)
            with open("/proc/%d/cmdline" % proc.pid, "rb") as f:
                argv = f.read().decode().split("\0")[:-1]
            eq(argv[1:], ["--threads", "2", "--grace", str(s.grace)],
               "flags from JOBGATE_THREADS and JOBGATE_GRACE")
            with open("/proc/%d/status" % proc.pid) as f:
                uid = int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))
            eq(uid, want_uid, "uid of jobgate-%s" % prog)

        # a job submitted through one program's socket, read through the other's: Redis in between
        body = b'{"type":"echo","payload":{"x":1}}'
        r = harness.fcgi_request(os.path.join(sockdir, "submit.sock"),
                                 harness.fcgi_params("POST", "/api/jobs", body,
                                                     {"Content-Type": "application/json"}),
                                 body, 10, "installed jobgate-submit: POST /api/jobs")
        eq(r.status, 202, "%s: status" % r.what)
        job = r.json()
        r = harness.fcgi_request(os.path.join(sockdir, "status.sock"),
                                 harness.fcgi_params("GET", "/api/jobs/" + job["id"]), b"", 10,
                                 "installed jobgate-status: GET /api/jobs/{id}")
        eq(r.status, 200, "%s: status" % r.what)
        eq((r.json()["id"], r.json()["status"]), (job["id"], "queued"), "%s: the job" % r.what)
        eq(r.header("ETag"), '"%d"' % job["version"], "%s: ETag" % r.what)

        # the example configuration is valid as shipped: the worker reads worker.conf, every
        # program takes jobgate.env's settings (its CHANGE-ME secrets masked)
        xenv = harness._base_env()
        xenv.update(_example_env())
        xenv["REDIS_URL"] = redis_url
        p = subprocess.run([os.path.join(bindir, "jobgate-worker"), "--config",
                            path(PREFIX, "share/jobgate/examples/worker.conf"), "--check"],
                           capture_output=True, text=True, timeout=30, env=xenv)
        eq(p.returncode, 0, "jobgate-worker --config examples/worker.conf --check: exit status "
           "(stderr %r)" % p.stderr[-500:])
        for t in harness.DEMO_TYPES:
            line = "type=%s=%s/share/jobgate/examples/jobs/%s.sh" % (t, PREFIX, t)
            check(line in p.stdout.splitlines(), "expected %r in the worker's --check" % line,
                  p.stdout)
            check(os.access(path(PREFIX, "share/jobgate/examples/jobs/%s.sh" % t), os.X_OK),
                  "expected the demo job %s installed where worker.conf names it" % t)
        p = subprocess.run([os.path.join(bindir, "jobgate-status"), "--check"], capture_output=True,
                           text=True, timeout=30, env=xenv)
        eq(p.returncode, 0, "jobgate-status --check with examples/jobgate.env: exit status "
           "(stdout %r, stderr %r)" % (p.stdout[-800:], p.stderr[-500:]))
        check("CHANGE-ME" not in p.stdout + p.stderr,
              "expected the example tokens masked in --check", p.stdout)

        # SIGTERM: each program stops within its grace and exits 0 (checked by s.stop())
        for proc in procs.values():
            rc, took, killed = proc.stop(signal.SIGTERM, s.grace + 5)
            eq((rc, killed), (0, False), "jobgate-%s after SIGTERM: exit status, killed; log:\n%s"
               % (proc.name, proc.log()))


def test_installed_run_script_started_as_a_user_makes_a_0660_socket():
    """Started by an ordinary user (no -u/-M from spawn-fcgi, which applies them only as root),
    the program runs as that user and its socket is still mode 0660. Run as root, this uses
    setpriv to become www-data; run as a user, the test above covered it."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return
    try:
        user = pwd.getpwnam("www-data")
    except KeyError:
        return
    with install("install-user") as s:
        s.start_redis()
        sockdir = os.path.join(s.dir, "run")
        os.mkdir(sockdir)
        os.chown(sockdir, user.pw_uid, user.pw_gid)
        env = s.program_env({"REDIS_URL": "redis://127.0.0.1:%d/0" % s.redis_port,
                             "JOBGATE_SOCKET_DIR": sockdir, "JOBGATE_BINDIR": path(PREFIX, "bin"),
                             "JOBGATE_GRACE": str(s.grace), "JOBGATE_USER": "nobody"})
        proc = harness.Proc("status", ["setpriv", "--reuid", str(user.pw_uid), "--regid",
                                       str(user.pw_gid), "--init-groups",
                                       path(PREFIX, "lib/jobgate/jobgate-fcgi.sh"), "status"],
                            env, os.path.join(s.dir, "status.log"))
        s.procs.setdefault("status", []).append(proc)
        sock = os.path.join(sockdir, "status.sock")
        harness.wait_until(lambda: os.path.exists(sock) or not proc.alive(), 10, "the socket " + sock)
        check(proc.alive(), "expected jobgate-fcgi.sh status to keep running; log:\n" + proc.log())
        st = os.stat(sock)
        eq((st.st_uid, stat.S_IMODE(st.st_mode)), (user.pw_uid, 0o660), "owner and mode of " + sock)
        check("JOBGATE_USER=nobody is ignored" in proc.log(),
              "expected a note that JOBGATE_USER does not apply when not root", proc.log())
        r = harness.fcgi_request(sock, harness.fcgi_params("GET", "/api/jobs/nosuchjob"), b"", 10,
                                 "jobgate-status run as www-data: GET /api/jobs/nosuchjob")
        harness.expect_error(r, 404, "not_found")
        rc, took, killed = proc.stop(signal.SIGTERM, s.grace + 5)
        eq((rc, killed), (0, False), "jobgate-status after SIGTERM: exit status, killed")


def test_run_script_refuses_what_is_not_a_web_program():
    with install():
        script = path(PREFIX, "lib/jobgate/jobgate-fcgi.sh")
        env = harness._base_env()
        env["JOBGATE_BINDIR"] = path(PREFIX, "bin")
        env["JOBGATE_SOCKET_DIR"] = tempfile.gettempdir()
        for args in ([], ["worker"], ["../bin/jobgate-status"], ["nosuchprogram"]):
            p = subprocess.run(["sh", script] + args, capture_output=True, text=True, timeout=10,
                               env=env, stdin=subprocess.DEVNULL)
            eq(p.returncode, 2, "jobgate-fcgi.sh %s: exit status" % " ".join(args))
            check(p.stderr.startswith("jobgate-fcgi: "),
                  "expected jobgate-fcgi.sh %s to say why, starting with its name" % " ".join(args),
                  p.stderr)
