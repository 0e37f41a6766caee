/* workloop.h — the worker's event loop: one process, one poll() over the job pipes, a signalfd and
 * the Redis subscriber connection; claims, log batches, lease renewals, completions and the
 * heartbeat go out as one pipeline per loop turn on the command connection. */
#ifndef JG_WORKLOOP_H
#define JG_WORKLOOP_H

#include "config.h"
#include "options.h"

/* Runs until SIGTERM/SIGINT and the graceful stop are over. Returns the exit status. */
int jg_worker_run(const jg_config_t *cfg, const jg_worker_opts_t *opts);

#endif
