/* runner.h — one job process: started with /bin/sh -c COMMAND (a single path is exec'd directly)
 * in its own process group and an empty directory of its own (its slot's, see jobdir.h), the payload on stdin, the JOBGATE_*
 * environment, stdout and stderr on non-blocking pipes; signalled as a group; its result file
 * read and checked; cleaned up. */
#ifndef JG_RUNNER_H
#define JG_RUNNER_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include "buf.h"
#include "jobdir.h"

#define JG_RESULT_MAX (16 * 1024 * 1024)   /* bytes of a result file */

typedef struct jg_child {
    pid_t pid;                 /* also the process group id; 0 when not started */
    int   reaped;              /* the leader was waited for: pid may name another process now,
                                  so the group is never signalled again */
    int   out_fd, err_fd;      /* read ends, non-blocking; -1 once closed */
    char  dir[PATH_MAX];       /* the job's directory ("" when none) */
    jg_jobdir_t *jobdir;       /* its slot's directory, of which dir is the path */
    char  result_path[PATH_MAX];
} jg_child_t;

typedef struct jg_child_spec {
    const char *command;
    const char *payload;
    size_t      payload_len;
    const char *id, *type, *queue;
    long        attempt;
    long long   fence;
    jg_jobdir_t *jobdir;       /* the slot's directory (made here if it has none) */
} jg_child_spec_t;

/* Once, at start: makes the worker a child subreaper (PR_SET_CHILD_SUBREAPER), so that a process
 * a job started and that left the job's process group is reparented to the worker and seen. */
void jg_child_init(void);

/* The worker reaped a child of its own (not through jg_child_reap): forgets it as a job leader. */
void jg_child_forget(pid_t pid);

/* Starts the job process. Returns JG_OK, or JG_ERR with a message in err (nothing is left
 * behind). */
int jg_child_start(jg_child_t *c, const jg_child_spec_t *spec, char *err, size_t errlen);

/* Sends sig to the job's whole process group (no-op once reaped or cleaned up). */
void jg_child_signal(const jg_child_t *c, int sig);

/* If the job process (the group leader) has exited: kills what is left of its group with
 * SIGKILL while the unreaped leader still holds the group id (so the number cannot belong to
 * another process group yet), tells the keeper, then reaps the leader. Returns 1 with its wait
 * status in *wstatus, or 0 while it runs (or when it is not ours). Never blocks. */
int jg_child_reap(jg_child_t *c, int *wstatus);

/* After a clean exit: the result file's JSON text into out ("null" when absent or empty,
 * surrounding blanks trimmed). Returns JG_OK, or JG_ERR with the attempt's error in err
 * (e.g. "invalid JSON in result file: ..."). */
int jg_child_result(const jg_child_t *c, jg_buf_t *out, char *err, size_t errlen);

/* Kills what is left of the group (unless reaped: jg_child_reap did), closes the pipes, and
 * readies the slot's directory for the next job, or drops it (jg_jobdir_recycle). */
void jg_child_cleanup(jg_child_t *c);

/* 1 when the job process (the group leader) has exited, reaped or not; 0 while it runs. */
int jg_child_exited(const jg_child_t *c);

/* Milliseconds as the seconds of "timeout after T s": at most 3 decimals, no trailing zeros
 * (1000 -> "1", 1500 -> "1.5", 86400000 -> "86400"). ms >= 0. */
void jg_seconds_text(long long ms, char *out, size_t outlen);

/* The attempt's error for a wait status that is not a clean exit: "exit status N: <line>"
 * ("exit status N" without a stderr line) or "killed by signal S". */
void jg_child_error(int wstatus, const char *last_stderr, char *out, size_t outlen);

#endif
