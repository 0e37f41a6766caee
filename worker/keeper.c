/* keeper.c — the guard process for jobs of a killed worker, and the remover of finished jobs'
 * directories (see keeper.h). Protocol on the pipe, one line per message: "+<pgid> <dir>\n",
 * "-<pgid>\n", "r<dir>\n" (remove this tree now), and "q\n" for a normal stop. The entry with
 * pgid 0 is the trash directory, and those with a negative number the job slots' directories
 * (worker/jobdir.c): never signalled, removed at any end, clean stop included. */
#include "keeper.h"
#include "jg.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int keeper_fd = -1;
static pid_t keeper = -1;
static char trash[PATH_MAX];   /* "<dir>/.jobgate-trash-XXXXXX", "" until the first hand-over */

#define REMOVE_DEPTH 1000   /* levels of directories removed (one descriptor each) */

/* Removes the entry `name` of the directory parent, a directory tree with everything in it.
 * Symbolic links are removed, never followed; a directory the job made read-only (or unreadable)
 * is given back its owner's rights first, so that what is in it can go too; a directory on
 * another file system than the top one (something mounted there) is left alone. */
static int remove_at(int parent, const char *name, int depth, dev_t *dev)
{
    if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR || depth >= REMOVE_DEPTH)
        return -1;
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES) {
        /* a directory (unlinkat said so, and a symlink is unlinked, not refused): rights back */
        struct stat st;
        if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) &&
            (depth == 0 || st.st_dev == *dev))
            fchmodat(parent, name, 0700, 0);
        fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || (depth > 0 && st.st_dev != *dev)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (depth == 0)
        *dev = st.st_dev;
    fchmod(fd, 0700);   /* a read-only directory: its entries can be removed */
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            remove_at(dirfd(d), e->d_name, depth + 1, dev) != 0)
            rc = -1;   /* go on: remove as much as possible */
    closedir(d);
    if (unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        rc = -1;
    return rc;
}

int jg_remove_tree(const char *dir)
{
    if (dir == NULL || dir[0] == '\0')
        return -1;
    dev_t dev = 0;
    return remove_at(AT_FDCWD, dir, 0, &dev);
}

/* A finished job's directory, which mostly holds nothing but its result file: two system calls
 * then, instead of a walk (open, stat, read, unlink, rmdir per entry). */
static void remove_job_dir(const char *dir)
{
    char path[PATH_MAX + 16];
    int n = snprintf(path, sizeof path, "%s/result.json", dir);
    if (n > 0 && (size_t)n < sizeof path)
        unlink(path);
    if (rmdir(dir) != 0)
        jg_remove_tree(dir);
}

typedef struct entry {
    pid_t pgid;
    char *dir;
} entry_t;

/* The keeper itself: reads messages until EOF. */
static void keeper_main(int fd)
{
    entry_t *ents = NULL;
    size_t n = 0, cap = 0;
    char buf[8192];
    size_t len = 0;
    int stop = 0;
    for (;;) {
        ssize_t got = read(fd, buf + len, sizeof buf - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        len += (size_t)got;
        char *nl;
        while ((nl = memchr(buf, '\n', len)) != NULL) {
            *nl = '\0';
            if (buf[0] == '+') {
                char *sp = strchr(buf, ' ');
                if (sp) {
                    if (n == cap) {
                        cap = cap ? cap * 2 : 64;
                        ents = realloc(ents, cap * sizeof *ents);
                        if (ents == NULL)
                            _exit(1);
                    }
                    ents[n].pgid = (pid_t)strtol(buf + 1, NULL, 10);
                    ents[n].dir = strdup(sp + 1);
                    n++;
                }
            } else if (buf[0] == '-') {
                pid_t pg = (pid_t)strtol(buf + 1, NULL, 10);
                for (size_t i = 0; i < n; i++)
                    if (ents[i].pgid == pg) {
                        free(ents[i].dir);
                        ents[i] = ents[--n];
                        break;
                    }
            } else if (buf[0] == 'r') {
                remove_job_dir(buf + 1);
            } else if (buf[0] == 'q') {
                stop = 1;
            }
            size_t used = (size_t)(nl - buf) + 1;
            memmove(buf, nl + 1, len - used);
            len -= used;
        }
        if (len == sizeof buf)
            len = 0;   /* a line longer than the buffer: not ours, dropped */
    }
    /* every group first, then the directories: nothing of a job writes into one being removed */
    for (size_t i = 0; i < n; i++)
        if (!stop && ents[i].pgid > 1)
            kill(-ents[i].pgid, SIGKILL);
    for (size_t i = 0; i < n; i++) {
        if ((!stop || ents[i].pgid <= 0) && ents[i].dir)
            jg_remove_tree(ents[i].dir);
        free(ents[i].dir);
    }
    free(ents);
    _exit(0);
}

pid_t jg_keeper_start(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        /* its own group, so that a signal to the worker's group (Ctrl-C, kill -9 -pgid) leaves
         * it alive to clean up; it dies only when told to, or by EOF */
        setpgid(0, 0);
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        signal(SIGPIPE, SIG_IGN);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        close(p[1]);
        /* a keeper started again later must not hold the worker's sockets and pipes */
        if (p[0] > 3)
            close_range(3, (unsigned)p[0] - 1, 0);
        close_range((unsigned)p[0] + 1, ~0U, 0);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
            if (devnull > 2)
                close(devnull);
        }
        keeper_main(p[0]);
    }
    close(p[0]);
    keeper_fd = p[1];
    keeper = pid;
    if (trash[0])   /* a keeper started again: it removes the trash too */
        jg_keeper_add(0, trash);
    return pid;
}

static void send_line(const char *s, size_t n)
{
    if (keeper_fd < 0)
        return;
    while (n > 0) {
        ssize_t w = write(keeper_fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(keeper_fd);
            keeper_fd = -1;
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

void jg_keeper_add(pid_t pgid, const char *dir)
{
    char line[4200];
    int n = snprintf(line, sizeof line, "+%d %s\n", (int)pgid, dir);
    if (n > 0 && (size_t)n < sizeof line)
        send_line(line, (size_t)n);
}

void jg_keeper_remove(pid_t pgid)
{
    char line[32];
    int n = snprintf(line, sizeof line, "-%d\n", (int)pgid);
    send_line(line, (size_t)n);
}

void jg_keeper_move(pid_t id, const char *dir)
{
    char line[4300];
    int n = snprintf(line, sizeof line, "-%d\n+%d %s\n", (int)id, (int)id, dir);
    if (n > 0 && (size_t)n < sizeof line)
        send_line(line, (size_t)n);   /* both lines in one write */
}

/* Directory removal on ext4 (with discard) blocks for up to a millisecond or more, and a
 * worker's loop must not: a rename within the same file system is cheap, so the tree moves
 * into the trash at once and the keeper removes it there, beside the loop. */
int jg_keeper_trash(const char *dir)
{
    if (keeper_fd < 0)
        return -1;
    const char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return -1;
    size_t plen = (size_t)(slash - dir);
    if (trash[0] == '\0') {
        if (plen + sizeof "/.jobgate-trash-XXXXXX" > sizeof trash)
            return -1;
        memcpy(trash, dir, plen);
        memcpy(trash + plen, "/.jobgate-trash-XXXXXX", sizeof "/.jobgate-trash-XXXXXX");
        if (mkdtemp(trash) == NULL) {
            trash[0] = '\0';
            return -1;
        }
        jg_keeper_add(0, trash);
    } else if (strncmp(trash, dir, plen) != 0 || trash[plen] != '/' ||
               strchr(trash + plen + 1, '/') != NULL) {
        return -1;   /* another parent ($TMPDIR changed): maybe another file system */
    }
    char to[PATH_MAX + 2];   /* "r<trash>/<name>\n" */
    int n = snprintf(to, sizeof to, "r%s%s", trash, slash);
    if (n < 0 || (size_t)n + 1 >= sizeof to || rename(dir, to + 1) != 0)
        return -1;
    to[n] = '\n';
    send_line(to, (size_t)n + 1);
    return 0;
}

void jg_keeper_stop(void)
{
    send_line("q\n", 2);
    if (keeper_fd >= 0)
        close(keeper_fd);
    keeper_fd = -1;
    /* it removes the trash, then exits: wait for that (5 s at most) so that nothing of ours is
     * left in $TMPDIR once the worker has exited */
    for (int i = 0; keeper > 0 && trash[0] && i < 500; i++) {
        pid_t got = waitpid(keeper, NULL, WNOHANG);
        if (got == keeper || (got < 0 && errno != EINTR))
            break;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
}

pid_t jg_keeper_pid(void) { return keeper; }

void jg_keeper_exited(void)
{
    keeper = -1;
    if (keeper_fd >= 0)
        close(keeper_fd);
    keeper_fd = -1;
}
