/* jobdir.h — a job slot's working directory. Made once per slot ($TMPDIR/jobgate-XXXXXX, mode
 * 0700); after each job, when nothing of the job's process group is left and the job left nothing
 * in it but its result file, it is emptied, checked (still our directory at that path, mode 0700,
 * no extended attributes added) and renamed to a new random name of the same form: the next job
 * gets an empty directory under a path of its own, and the old path is gone, without a directory
 * made and removed per job (on ext4 without a journal, allocating an inode scans every inode
 * freed in the last minutes: a fifth of an `echo` job's CPU). Anything else — files or
 * directories left behind, a changed mode, a replaced path, a process the job started still
 * alive (in its group, or escaped from it) —
 * and the directory is dropped (moved into the keeper's trash and removed there, as before) and
 * the slot makes a new one for its next job. The keeper knows each slot's directory, so a worker
 * killed with -9 leaves none behind. */
#ifndef JG_JOBDIR_H
#define JG_JOBDIR_H

#include <limits.h>
#include <sys/types.h>

typedef struct jg_jobdir {
    int     fd;            /* the directory, O_DIRECTORY; -1 when the slot has none */
    int     keeper_id;     /* its entry with the keeper: a negative number (never a group) */
    dev_t   dev;
    ino_t   ino;
    long    xattr_len;     /* flistxattr's size when it was made (0 on most systems) */
    char    path[PATH_MAX];
} jg_jobdir_t;

/* A slot's directory, none made yet; slot is the slot's index (its keeper entry). */
void jg_jobdir_init(jg_jobdir_t *d, int slot);

/* Makes the directory if the slot has none. Returns 0, or -1 with errno set and *tmp naming the
 * parent it tried. */
int jg_jobdir_ready(jg_jobdir_t *d, const char **tmp);

/* After a job: reuse under a new name, or drop (see above); reusable says that nothing the job
 * started is left to write in it (the caller knows its processes). Never blocks on a directory
 * removal. */
void jg_jobdir_recycle(jg_jobdir_t *d, int reusable);

/* Drops the directory: moved into the keeper's trash (or removed here when there is no keeper). */
void jg_jobdir_drop(jg_jobdir_t *d);

/* The worker ends: the directory is removed now. */
void jg_jobdir_close(jg_jobdir_t *d);

/* A new keeper process was started: tells it of the directory again. */
void jg_jobdir_rekeep(const jg_jobdir_t *d);

#endif
