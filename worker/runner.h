/* runner.h — one job process: started with /bin/sh -c COMMAND in its own process group and a
 * fresh temporary directory, the payload on stdin, the JOBGATE_* environment, stdout and stderr
 * on non-blocking pipes; signalled as a group; its result file read and checked; cleaned up. */
#ifndef JG_RUNNER_H
#define JG_RUNNER_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include "buf.h"

#define JG_RESULT_MAX (16 * 1024 * 1024)   /* bytes of a result file */

typedef struct jg_child {
    pid_t pid;                 /* also the process group id; 0 when not started */
    int   out_fd, err_fd;      /* read ends, non-blocking; -1 once closed */
    char  dir[PATH_MAX];       /* the temporary directory ("" when none) */
    char  result_path[PATH_MAX];
} jg_child_t;

typedef struct jg_child_spec {
    const char *command;
    const char *payload;
    size_t      payload_len;
    const char *id, *type, *queue;
    long        attempt;
    long long   fence;
} jg_child_spec_t;

/* Starts the job process. Returns JG_OK, or JG_ERR with a message in err (nothing is left
 * behind). */
int jg_child_start(jg_child_t *c, const jg_child_spec_t *spec, char *err, size_t errlen);

/* Sends sig to the job's whole process group (no-op once cleaned up). */
void jg_child_signal(const jg_child_t *c, int sig);

/* After a clean exit: the result file's JSON text into out ("null" when absent or empty,
 * surrounding blanks trimmed). Returns JG_OK, or JG_ERR with the attempt's error in err
 * (e.g. "invalid JSON in result file: ..."). */
int jg_child_result(const jg_child_t *c, jg_buf_t *out, char *err, size_t errlen);

/* Kills what is left of the group, closes the pipes and removes the directory. */
void jg_child_cleanup(jg_child_t *c);

/* The attempt's error for a wait status that is not a clean exit: "exit status N: <line>"
 * ("exit status N" without a stderr line) or "killed by signal S". */
void jg_child_error(int wstatus, const char *last_stderr, char *out, size_t outlen);

#endif
