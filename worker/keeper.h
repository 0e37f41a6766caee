/* keeper.h — the guard that outlives a killed worker. A small process forked at start, in its own
 * process group, that the worker tells about each running job (its process group and temporary
 * directory) over a pipe. When that pipe closes without notice — the worker was killed with -9 —
 * the keeper kills every job process group it knows with SIGKILL, removes their directories and
 * exits, so that no job runs on beside the retry that another worker starts. (Each job's group
 * leader also has PR_SET_PDEATHSIG; the keeper also catches what the leader forked.) */
#ifndef JG_KEEPER_H
#define JG_KEEPER_H

#include <sys/types.h>

/* Forks the keeper. Returns its pid, or -1 (the worker runs on without it, with a warning). */
pid_t jg_keeper_start(void);
/* A job started / ended. Best effort: a keeper that died is simply not told. */
void jg_keeper_add(pid_t pgid, const char *dir);
void jg_keeper_remove(pid_t pgid);
/* The entry id (a job slot's directory, id < 0) now names dir: one message for remove + add. */
void jg_keeper_move(pid_t id, const char *dir);
/* A finished job's directory: moved at once into a trash directory beside it (same parent, so
 * the same file system; created on first use, known to the keeper), where the keeper removes
 * it. Returns 0, or -1 when it was not moved (no keeper, rename failed): the caller removes it. */
int jg_keeper_trash(const char *dir);
/* The worker ends normally: the keeper exits without killing anything, once it has removed the
 * trash (waited for, 5 s at most). */
void jg_keeper_stop(void);
/* The keeper's pid, or -1. */
pid_t jg_keeper_pid(void);
/* For the worker's SIGCHLD handling: the keeper process pid exited; forget it. */
void jg_keeper_exited(void);
/* Removes a directory tree, or whatever else is at that path: symlinks are removed, never
 * followed; read-only directories in it are made writable first; nothing mounted in it is
 * entered. Returns 0, or -1 when something could not be removed (as much as possible is). */
int jg_remove_tree(const char *dir);

#endif
