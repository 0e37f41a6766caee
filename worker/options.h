/* options.h — the worker's own settings: command-line flags and the --config file (the Redis
 * and JOBGATE_* settings come from the environment through config.h). */
#ifndef JG_WORKER_OPTIONS_H
#define JG_WORKER_OPTIONS_H

#include <stddef.h>
#include <stdio.h>

#include "jg.h"

#define JG_WORKER_MAX_QUEUES 32
#define JG_WORKER_MAX_TYPES  64
#define JG_WORKER_MAX_CONCURRENCY 256
#define JG_WORKER_ID_MAX 100
#define JG_WORKER_NO_TYPES "no job types: give at least one --type NAME=COMMAND"

typedef enum jg_worker_action {
    JG_WORKER_RUN = 0,
    JG_WORKER_HELP,
    JG_WORKER_VERSION,
    JG_WORKER_CHECK,
} jg_worker_action_t;

typedef struct jg_worker_type {
    char  name[JG_NAME_MAX + 1];
    char *command;             /* owned; run with /bin/sh -c */
} jg_worker_type_t;

typedef struct jg_worker_opts {
    jg_worker_action_t action;
    char queues[JG_WORKER_MAX_QUEUES][JG_NAME_MAX + 1];   /* claimed in this order */
    int  nqueues;
    jg_worker_type_t types[JG_WORKER_MAX_TYPES];
    int  ntypes;
    int  concurrency;          /* --concurrency N, default 1 */
    double grace;              /* --grace S, default 30 */
    char id[JG_WORKER_ID_MAX + 1];   /* --id, default <host>-<pid>-<4 hex> */
    char config_file[4096];    /* --config FILE, "" = none */
} jg_worker_opts_t;

/* Parses argv (and the file named by --config, read first: flags given on the command line
 * override its values, and --queue / --type on the command line replace its lists). Fills in the
 * defaults. Returns JG_OK, or JG_ERR with a message in err (no --type is an error, except with
 * --check, which reports it: ntypes is then 0). The caller frees with
 * jg_worker_opts_free() in both cases. */
int jg_worker_opts_parse(jg_worker_opts_t *o, int argc, char **argv, char *err, size_t errlen);
void jg_worker_opts_free(jg_worker_opts_t *o);

/* The command for a type name, or NULL. */
const char *jg_worker_command(const jg_worker_opts_t *o, const char *type);

void jg_worker_usage(FILE *out);
/* One `name=value` line per setting, as --check shows them. */
void jg_worker_opts_print(const jg_worker_opts_t *o, FILE *out);

#endif
