/* runner.c — starting, signalling and cleaning up one job process (see runner.h). */
#include "runner.h"
#include "jg.h"
#include "json.h"
#include "keeper.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Variables a job does not inherit from the worker: its own, and the secrets. */
static int dropped_var(const char *kv)
{
    static const char *const names[] = {
        "JOBGATE_JOB_ID=", "JOBGATE_JOB_TYPE=", "JOBGATE_QUEUE=", "JOBGATE_ATTEMPT=",
        "JOBGATE_RESULT_FILE=", "JOBGATE_FENCE=", "REDIS_URL=", "JOBGATE_API_TOKENS=",
        "JOBGATE_READ_TOKENS=",
    };
    for (size_t i = 0; i < JG_ARRAY_LEN(names); i++)
        if (strncmp(kv, names[i], strlen(names[i])) == 0)
            return 1;
    return 0;
}

/* The worker's environment minus the dropped variables, gathered once: the strings are
 * environ's own (the worker never changes its environment after it starts). */
static char **base_env;
static size_t base_n;

static void gather_base_env(void)
{
    size_t n = 0;
    for (char **e = environ; *e; e++)
        n++;
    base_env = calloc(n + 1, sizeof *base_env);
    if (base_env == NULL)
        abort();
    for (char **e = environ; *e; e++)
        if (!dropped_var(*e))
            base_env[base_n++] = *e;
}

/* The environment for the job: built before the clone, freed by the caller (free_env frees
 * only the six JOBGATE_* strings it made; the rest belong to environ). */
static char **build_env(const jg_child_spec_t *s, const char *result_path)
{
    if (base_env == NULL)
        gather_base_env();
    char **env = calloc(base_n + 7, sizeof *env);
    if (env == NULL)
        abort();
    if (asprintf(&env[0], "JOBGATE_JOB_ID=%s", s->id) < 0 ||
        asprintf(&env[1], "JOBGATE_JOB_TYPE=%s", s->type) < 0 ||
        asprintf(&env[2], "JOBGATE_QUEUE=%s", s->queue) < 0 ||
        asprintf(&env[3], "JOBGATE_ATTEMPT=%ld", s->attempt) < 0 ||
        asprintf(&env[4], "JOBGATE_FENCE=%lld", s->fence) < 0 ||
        asprintf(&env[5], "JOBGATE_RESULT_FILE=%s", result_path) < 0)
        abort();
    memcpy(env + 6, base_env, base_n * sizeof *env);
    env[6 + base_n] = NULL;
    return env;
}

static void free_env(char **env)
{
    if (env == NULL)
        return;
    for (int i = 0; i < 6; i++)
        free(env[i]);
    free(env);
}

/* The payload as a sealed in-memory file: a seekable stdin that needs no writer. */
static int payload_fd(const char *payload, size_t len)
{
    int fd = memfd_create("jobgate-payload", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {   /* pwrite leaves the offset at 0, where the job starts reading */
        ssize_t w = pwrite(fd, payload + off, len - off, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    return fd;
}

/* A "single path" (docs/worker.md, "Worker protocol"): only [A-Za-z0-9_./+-], at least one
 * '/', not starting with '-'. It is exec'd directly, as `/bin/sh -c 'exec PATH'` would. */
static int plain_path(const char *command)
{
    if (strchr(command, '/') == NULL || command[0] == '-')
        return 0;
    for (const char *p = command; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("_./+-", *p)))
            return 0;
    return 1;
}

/* ---- the worker's children ---------------------------------------------------------------- */

/* The job leaders started and not yet reaped. With the worker a child subreaper, every other
 * child it has (the keeper aside) is a process that a job started and that outlived the job's
 * process group (setsid, a daemon), reparented to the worker when its parents died. */
static pid_t *leaders;
static int nleaders, capleaders;
static int subreaper;          /* PR_SET_CHILD_SUBREAPER is set: strays can be seen */
static char children_path[64]; /* /proc/self/task/<tid>/children */

void jg_child_init(void)
{
    subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1) == 0;
    snprintf(children_path, sizeof children_path, "/proc/self/task/%d/children", (int)getpid());
}

static void leader_add(pid_t pid)
{
    if (nleaders == capleaders) {
        capleaders = capleaders ? capleaders * 2 : 16;
        leaders = realloc(leaders, (size_t)capleaders * sizeof *leaders);
        if (leaders == NULL)
            abort();
    }
    leaders[nleaders++] = pid;
}

void jg_child_forget(pid_t pid)
{
    for (int i = 0; i < nleaders; i++)
        if (leaders[i] == pid) {
            leaders[i] = leaders[--nleaders];
            return;
        }
}

/* 1 when the worker has a child that is neither a job leader nor the keeper (or cannot tell). */
static int strays(void)
{
    if (!subreaper)
        return 1;
    char buf[4096];
    int fd = open(children_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0 || n == (ssize_t)sizeof buf - 1)
        return 1;
    buf[n] = '\0';
    for (char *p = buf, *end; *p; p = end) {
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        int known = pid == jg_keeper_pid();
        for (int i = 0; i < nleaders && !known; i++)
            known = leaders[i] == pid;
        if (!known)
            return 1;
    }
    return 0;
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void child_exec(int dir_fd, const char *command, int direct,
                       char **env, int in_fd, int out_w, int err_w, pid_t parent)
{
    setpgid(0, 0);
    /* dies with the worker; if the worker is already gone, do not start at all */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    static const int sigs[] = {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1,
                               SIGUSR2};
    for (size_t i = 0; i < JG_ARRAY_LEN(sigs); i++)
        signal(sigs[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* the slot's directory by its descriptor (jobdir.c checked that it is the one at its path),
     * before the dup2s could land on that descriptor's number */
    if (fchdir(dir_fd) != 0)
        _exit(127);
    if (dup2(in_fd, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
        _exit(127);
    /* nothing else of the worker's (Redis sockets, other jobs' pipes) leaks into the job */
    if (close_range(3, ~0U, 0) != 0)
        for (int fd = 3; fd < 65536; fd++)
            close(fd);
    /* A single path is exec'd directly, as `sh -c 'exec PATH'` would: the job's process is the
     * program itself (signals reach it, its death by a signal is "killed by signal S"), and a
     * shell start is saved (a third of the cost of a tiny job). Anything else, or a file the
     * kernel cannot exec, goes to /bin/sh -c as usual (the shell is then the job's process). */
    if (direct) {
        char *const dargv[] = {(char *)command, NULL};
        execve(command, dargv, env);
    }
    char *const argv[] = {(char *)"sh", (char *)"-c", (char *)command, NULL};
    execve("/bin/sh", argv, env);
    _exit(127);
}



typedef struct child_args {
    int dir_fd;
    const char *command;
    int direct;
    char **env;
    int in_fd, out_w, err_w;
    pid_t parent;
} child_args_t;

static int child_main(void *arg)
{
    child_args_t *a = arg;
    child_exec(a->dir_fd, a->command, a->direct, a->env, a->in_fd, a->out_w, a->err_w,
               a->parent);
    return 127;
}

/* The job process. fork() copies the worker's page tables only for exec to throw them away, and
 * that copy is most of a tiny job's cost in the worker; like posix_spawn, a clone that shares
 * the memory and suspends the worker until the child has exec'd avoids it (the child only makes
 * system calls). posix_spawn itself cannot set PR_SET_PDEATHSIG. Sanitizer builds fork. */
static pid_t spawn(child_args_t *a)
{
#if defined(__SANITIZE_ADDRESS__) || defined(JG_SPAWN_FORK)
    pid_t pid = fork();
    if (pid == 0)
        child_main(a);
    return pid;
#else
    enum { STACK = 128 * 1024 };
    static char *stack;   /* one is enough: the worker waits while the child uses it */
    if (stack == NULL) {
        stack = mmap(NULL, STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                     -1, 0);
        if (stack == MAP_FAILED) {
            stack = NULL;
            return -1;
        }
    }
    return clone(child_main, stack + STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, a);
#endif
}

int jg_child_start(jg_child_t *c, const jg_child_spec_t *spec, char *err, size_t errlen)
{
    int rc = JG_ERR;
    int in_fd = -1, out[2] = {-1, -1}, errp[2] = {-1, -1};
    char **env = NULL;
    /* (not a memset of the whole struct: its two PATH_MAX buffers are written before read) */
    c->pid = 0;
    c->reaped = 0;
    c->out_fd = c->err_fd = -1;
    c->dir[0] = c->result_path[0] = '\0';
    c->jobdir = spec->jobdir;

    const char *tmp = NULL;
    if (jg_jobdir_ready(c->jobdir, &tmp) != 0) {
        snprintf(err, errlen, "cannot create a temporary directory in %s: %s", tmp,
                 strerror(errno));
        goto out;
    }
    memcpy(c->dir, c->jobdir->path, strlen(c->jobdir->path) + 1);
    if (snprintf(c->result_path, sizeof c->result_path, "%.4000s/result.json", c->dir) >=
        (int)sizeof c->result_path) {
        snprintf(err, errlen, "temporary directory name too long");
        goto out;
    }
    if ((in_fd = payload_fd(spec->payload, spec->payload_len)) < 0 ||
        pipe2(out, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "cannot set up the job's stdin/stdout/stderr: %s", strerror(errno));
        goto out;
    }
    env = build_env(spec, c->result_path);
    int direct = plain_path(spec->command);
    static pid_t parent;   /* the worker's pid: it never changes (the keeper runs no jobs) */
    if (parent == 0)
        parent = getpid();
    child_args_t ca = {c->jobdir->fd, spec->command, direct, env, in_fd,
                       out[1], errp[1], parent};
    pid_t pid = spawn(&ca);
    if (pid < 0) {
        snprintf(err, errlen, "cannot fork: %s", strerror(errno));
        goto out;
    }
#if defined(__SANITIZE_ADDRESS__) || defined(JG_SPAWN_FORK)
    setpgid(pid, pid);   /* both sides set it: no window where a signal misses the group */
#endif
    /* (after a CLONE_VFORK clone the child has already set it, and exec'd: nothing to do) */
    c->pid = pid;
    c->out_fd = out[0];
    c->err_fd = errp[0];
    out[0] = errp[0] = -1;
    fcntl(c->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(c->err_fd, F_SETFL, O_NONBLOCK);
    jg_keeper_add(pid, c->dir);
    leader_add(pid);
    rc = JG_OK;
out:
    free_env(env);
    if (in_fd >= 0)
        close(in_fd);
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]);
        if (errp[i] >= 0)
            close(errp[i]);
    }
    if (rc != JG_OK)
        c->dir[0] = '\0';   /* (the slot's directory stays: nothing ran in it) */
    return rc;
}

void jg_child_signal(const jg_child_t *c, int sig)
{
    if (c->pid > 0 && !c->reaped)
        kill(-c->pid, sig);
}

int jg_child_reap(jg_child_t *c, int *wstatus)
{
    if (c->pid <= 0 || c->reaped)
        return 0;
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)c->pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0)
        return 0;
    kill(-c->pid, SIGKILL);   /* what the job left running in its group */
    jg_keeper_remove(c->pid);
    pid_t got;
    while ((got = waitpid(c->pid, wstatus, 0)) < 0 && errno == EINTR)
        ;
    if (got < 0)   /* cannot happen: it was waitable a moment ago */
        *wstatus = info.si_code == CLD_EXITED ? (info.si_status & 0xff) << 8
                                              : (info.si_status & 0x7f);
    jg_child_forget(c->pid);
    c->reaped = 1;
    return 1;
}

int jg_child_result(const jg_child_t *c, jg_buf_t *out, char *err, size_t errlen)
{
    int rc = JG_ERR;
    jg_buf_t text = JG_BUF_INIT;
    int fd = open(c->result_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno != ENOENT) {
            snprintf(err, errlen, "cannot read result file: %s", strerror(errno));
            goto out;
        }
    } else {
        char buf[65536];
        for (;;) {
            ssize_t got = read(fd, buf, sizeof buf);
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0) {
                snprintf(err, errlen, "cannot read result file: %s", strerror(errno));
                goto out;
            }
            if (got == 0)
                break;
            if (text.len + (size_t)got > JG_RESULT_MAX) {
                snprintf(err, errlen, "result file larger than %d bytes", JG_RESULT_MAX);
                goto out;
            }
            jg_buf_append(&text, buf, (size_t)got);
        }
    }
    const char *s = text.data ? text.data : "";
    size_t len = text.len;
    while (len > 0 && strchr(" \t\r\n", s[0])) {
        s++;
        len--;
    }
    while (len > 0 && strchr(" \t\r\n", s[len - 1]))
        len--;
    if (len == 0) {
        jg_buf_puts(out, "null");
        rc = JG_OK;
        goto out;
    }
    char msg[200];
    if (jg_json_check(s, len, JG_JSON_MAX_DEPTH, msg, sizeof msg) != JG_JSON_OK) {
        snprintf(err, errlen, "invalid JSON in result file: %s", msg);
        goto out;
    }
    jg_buf_append(out, s, len);
    rc = JG_OK;
out:
    if (fd >= 0)
        close(fd);
    jg_buf_free(&text);
    return rc;
}

void jg_child_cleanup(jg_child_t *c)
{
    pid_t pgid = c->pid;
    if (c->pid > 0 && !c->reaped) {
        /* the leader is unreaped (a zombie at worst), so the group id is still the job's;
         * a leader left unreaped here is reaped by the worker's SIGCHLD handling */
        kill(-c->pid, SIGKILL);   /* whatever the job left running in its group */
        jg_keeper_remove(c->pid);
    }
    c->pid = 0;
    c->reaped = 0;
    if (c->out_fd >= 0)
        close(c->out_fd);
    if (c->err_fd >= 0)
        close(c->err_fd);
    c->out_fd = c->err_fd = -1;
    /* the directory goes on to the slot's next job only when nothing the job started can still
     * write in it: its group is gone (not merely killed), and no process escaped the group */
    if (c->dir[0] && c->jobdir)
        jg_jobdir_recycle(c->jobdir, pgid > 0 && kill(-pgid, 0) != 0 && errno == ESRCH &&
                                         !strays());
    c->dir[0] = '\0';
}

int jg_child_exited(const jg_child_t *c)
{
    if (c->pid <= 0)
        return 0;
    if (c->reaped)
        return 1;
    siginfo_t info;
    memset(&info, 0, sizeof info);
    return waitid(P_PID, (id_t)c->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid != 0;
}

void jg_seconds_text(long long ms, char *out, size_t outlen)
{
    snprintf(out, outlen, "%lld.%03lld", ms / 1000, ms % 1000);
    char *dot = strchr(out, '.');
    if (dot == NULL)
        return;
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '0')
        out[--n] = '\0';
    if (out[n - 1] == '.')
        out[n - 1] = '\0';
}

void jg_child_error(int wstatus, const char *last_stderr, char *out, size_t outlen)
{
    if (WIFSIGNALED(wstatus))
        snprintf(out, outlen, "killed by signal %d", WTERMSIG(wstatus));
    else if (last_stderr && last_stderr[0])
        snprintf(out, outlen, "exit status %d: %s", WEXITSTATUS(wstatus), last_stderr);
    else
        snprintf(out, outlen, "exit status %d", WEXITSTATUS(wstatus));
}
