/* jobdir.c — a job slot's working directory, made once and handed to each job emptied and under a
 * new name (see jobdir.h). */
#include "jobdir.h"
#include "jg.h"
#include "keeper.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#define NAME_PREFIX "/jobgate-"
#define NAME_CHARS  6          /* as mkdtemp's XXXXXX */

void jg_jobdir_init(jg_jobdir_t *d, int slot)
{
    d->fd = -1;
    d->keeper_id = -(slot + 1);
    d->path[0] = '\0';
}

int jg_jobdir_ready(jg_jobdir_t *d, const char **tmp)
{
    if (d->fd >= 0)
        return 0;
    const char *t = getenv("TMPDIR");
    if (t == NULL || t[0] != '/')
        t = "/tmp";
    *tmp = t;
    if (snprintf(d->path, sizeof d->path, "%.4000s" NAME_PREFIX "XXXXXX", t) >=
        (int)sizeof d->path) {
        errno = ENAMETOOLONG;
        d->path[0] = '\0';
        return -1;
    }
    if (mkdtemp(d->path) == NULL) {
        d->path[0] = '\0';
        return -1;
    }
    struct stat st;
    d->fd = open(d->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d->fd < 0 || fstat(d->fd, &st) != 0) {
        int e = errno;
        if (d->fd >= 0)
            close(d->fd);
        d->fd = -1;
        rmdir(d->path);
        d->path[0] = '\0';
        errno = e;
        return -1;
    }
    d->dev = st.st_dev;
    d->ino = st.st_ino;
    d->xattr_len = (long)flistxattr(d->fd, NULL, 0);
    jg_keeper_add(d->keeper_id, d->path);
    return 0;
}

/* The directory holds nothing (result.json was removed first): "." and ".." only. */
static int is_empty(int fd)
{
    union {
        struct dirent64 align;
        char bytes[4096];
    } buf;
    if (lseek(fd, 0, SEEK_SET) != 0)
        return 0;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf.bytes, sizeof buf.bytes);
        if (n < 0)
            return 0;
        if (n == 0)
            return 1;
        for (long off = 0; off < n;) {
            struct dirent64 *e = (struct dirent64 *)(void *)(buf.bytes + off);
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                return 0;
            off += e->d_reclen;
        }
    }
}

/* A new name of the directory's form, from a generator seeded once from the kernel. The names
 * need not be secret (the rename never replaces: another name is drawn on a clash), only
 * unlikely to repeat. */
static void new_name(char *path, size_t base)
{
    static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static uint64_t state;
    while (state == 0 && getrandom(&state, sizeof state, 0) != (ssize_t)sizeof state)
        state = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)&state;
    state += 0x9e3779b97f4a7c15ULL;   /* splitmix64 */
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    for (int i = 0; i < NAME_CHARS; i++, z /= 62)
        path[base + i] = chars[z % 62];
    path[base + NAME_CHARS] = '\0';
}

void jg_jobdir_recycle(jg_jobdir_t *d, int reusable)
{
    if (d->fd < 0)
        return;
    if (!reusable)
        goto drop;
    /* still our directory, at its path, as it was made */
    struct stat st;
    if (fstatat(AT_FDCWD, d->path, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode) ||
        st.st_dev != d->dev || st.st_ino != d->ino || (st.st_mode & 07777) != 0700 ||
        (long)flistxattr(d->fd, NULL, 0) != d->xattr_len)
        goto drop;
    if (unlinkat(d->fd, "result.json", 0) != 0 && errno != ENOENT)
        goto drop;
    if (!is_empty(d->fd))
        goto drop;   /* the job left more: removed beside the loop, as a fresh one would be */
    char to[PATH_MAX];
    size_t base = strlen(d->path);
    const char *slash = strrchr(d->path, '/');
    if (slash == NULL || base + 1 > sizeof to)
        goto drop;
    memcpy(to, d->path, base + 1);
    base = (size_t)(slash - d->path) + sizeof NAME_PREFIX - 1;
    if (base + NAME_CHARS + 1 > sizeof to)
        goto drop;
    for (int tries = 0;; tries++) {
        new_name(to, base);
        if (renameat2(AT_FDCWD, d->path, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
            break;
        if (errno != EEXIST || tries == 20)
            goto drop;
    }
    memcpy(d->path, to, strlen(to) + 1);
    jg_keeper_move(d->keeper_id, d->path);
    return;
drop:
    jg_jobdir_drop(d);
}

/* Lets go of the slot's directory: into the keeper's trash (removed in the background), or,
 * without trash or when the trash refuses it, removed here. */
static void release(jg_jobdir_t *d, int trash)
{
    if (d->fd < 0)
        return;
    close(d->fd);
    d->fd = -1;
    jg_keeper_remove(d->keeper_id);
    if (!trash || jg_keeper_trash(d->path) != 0)
        jg_remove_tree(d->path);
    d->path[0] = '\0';
}

void jg_jobdir_drop(jg_jobdir_t *d) { release(d, 1); }

void jg_jobdir_close(jg_jobdir_t *d) { release(d, 0); }

void jg_jobdir_rekeep(const jg_jobdir_t *d)
{
    if (d->fd >= 0)
        jg_keeper_add(d->keeper_id, d->path);
}
