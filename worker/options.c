/* options.c — the worker's flags and config file (see options.h).
 *
 * The config file holds the same settings as the long flags, one per line:
 *     # comment
 *     queue = default
 *     type = echo=/usr/share/jobgate/examples/jobs/echo.sh
 *     concurrency = 4
 * ("name = value", "name=value" or "name value"; blank lines and lines starting with # are
 * skipped). */
#include "options.h"
#include "config.h"
#include "keys.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void jg_worker_usage(FILE *out)
{
    fputs("usage: jobgate-worker --type NAME=COMMAND ... [--queue Q ...] [options]\n"
          "Claims jobs from Redis and runs them (contract section 9).\n"
          "  -q, --queue Q          a queue to claim from (repeatable, in order; default: default)\n"
          "  -t, --type NAME=CMD    a job type and the command that runs it with /bin/sh -c\n"
          "                         (repeatable; at least one)\n"
          "  -c, --concurrency N    jobs run at once (1..256, default 1)\n"
          "      --grace S          on SIGTERM, how long running jobs may finish (default 30)\n"
          "      --id ID            worker id (default <host>-<pid>-<random>)\n"
          "      --config FILE      read settings from FILE (same names as the long flags)\n"
          "      --check            print the worker's settings (secrets masked) and what is\n"
          "                         missing, ping Redis, exit 0 if usable\n"
          "      --help, --version\n"
          "Environment: REDIS_URL, JOBGATE_KEY_PREFIX, JOBGATE_LOG_MAX, JOBGATE_RETENTION,\n"
          "JOBGATE_LEASE, JOBGATE_RETRY_BASE, JOBGATE_REDIS_WAIT_REPLICAS, JOBGATE_REDIS_WAIT_MS\n"
          "(see docs/worker.md).\n",
          out);
}

static int fail(char *err, size_t errlen, const char *what, const char *value)
{
    snprintf(err, errlen, "%s: %s", what, value);
    return JG_ERR;
}

static int valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > JG_WORKER_ID_MAX)
        return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("_.:-", *s)))
            return 0;
    return 1;
}

static int add_queue(jg_worker_opts_t *o, const char *q, char *err, size_t errlen)
{
    if (!jg_valid_name(q))
        return fail(err, errlen, "invalid queue name", q);
    for (int i = 0; i < o->nqueues; i++)
        if (strcmp(o->queues[i], q) == 0)
            return JG_OK;
    if (o->nqueues >= JG_WORKER_MAX_QUEUES)
        return fail(err, errlen, "too many queues at", q);
    snprintf(o->queues[o->nqueues++], JG_NAME_MAX + 1, "%s", q);
    return JG_OK;
}

static int add_type(jg_worker_opts_t *o, const char *spec, char *err, size_t errlen)
{
    const char *eq = strchr(spec, '=');
    char name[JG_NAME_MAX + 1];
    if (eq == NULL || eq == spec || (size_t)(eq - spec) > JG_NAME_MAX)
        return fail(err, errlen, "--type wants NAME=COMMAND, got", spec);
    memcpy(name, spec, (size_t)(eq - spec));
    name[eq - spec] = '\0';
    if (!jg_valid_name(name))
        return fail(err, errlen, "invalid type name", name);
    if (eq[1] == '\0')
        return fail(err, errlen, "empty command for type", name);
    char *cmd = strdup(eq + 1);
    if (cmd == NULL)
        abort();
    for (int i = 0; i < o->ntypes; i++)
        if (strcmp(o->types[i].name, name) == 0) {   /* a later one replaces it */
            free(o->types[i].command);
            o->types[i].command = cmd;
            return JG_OK;
        }
    if (o->ntypes >= JG_WORKER_MAX_TYPES) {
        free(cmd);
        return fail(err, errlen, "too many types at", name);
    }
    snprintf(o->types[o->ntypes].name, JG_NAME_MAX + 1, "%s", name);
    o->types[o->ntypes++].command = cmd;
    return JG_OK;
}

static void clear_types(jg_worker_opts_t *o)
{
    for (int i = 0; i < o->ntypes; i++)
        free(o->types[i].command);
    o->ntypes = 0;
}

/* One setting by its long name (without "--"). from_cli: the first --queue/--type of the
 * command line replaces the file's list. */
typedef struct parse_state {
    int cli_queues, cli_types;
} parse_state_t;

static int set_option(jg_worker_opts_t *o, parse_state_t *st, int from_cli, const char *name,
                      const char *value, char *err, size_t errlen)
{
    long n;
    if (strcmp(name, "queue") == 0) {
        if (from_cli && !st->cli_queues++)
            o->nqueues = 0;
        return add_queue(o, value, err, errlen);
    }
    if (strcmp(name, "type") == 0) {
        if (from_cli && !st->cli_types++)
            clear_types(o);
        return add_type(o, value, err, errlen);
    }
    if (strcmp(name, "concurrency") == 0) {
        if (jg_parse_long(value, 1, JG_WORKER_MAX_CONCURRENCY, &n))
            return fail(err, errlen, "--concurrency wants 1..256, got", value);
        o->concurrency = (int)n;
        return JG_OK;
    }
    if (strcmp(name, "grace") == 0) {
        if (jg_parse_double(value, 0, 86400, &o->grace))
            return fail(err, errlen, "--grace wants seconds 0..86400, got", value);
        return JG_OK;
    }
    if (strcmp(name, "id") == 0) {
        if (!valid_id(value))
            return fail(err, errlen, "--id wants 1..100 of [A-Za-z0-9_.:-], got", value);
        snprintf(o->id, sizeof o->id, "%s", value);
        return JG_OK;
    }
    return fail(err, errlen, "unknown setting", name);
}

static int read_config_file(jg_worker_opts_t *o, parse_state_t *st, char *err, size_t errlen)
{
    int rc = JG_ERR;
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;
    FILE *f = fopen(o->config_file, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", o->config_file, strerror(errno));
        goto out;
    }
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && isspace((unsigned char)line[len - 1]))
            line[--len] = '\0';
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        char *name = p;
        while (*p == '-' || (*p >= 'a' && *p <= 'z'))
            p++;
        char *name_end = p;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '=')
            p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (name_end == name || (*name_end && !strchr(" \t=", *name_end))) {
            snprintf(err, errlen, "%s:%d: expected `name = value`", o->config_file, lineno);
            goto out;
        }
        *name_end = '\0';
        char msg[512];
        if (set_option(o, st, 0, name, p, msg, sizeof msg)) {
            snprintf(err, errlen, "%s:%d: %s", o->config_file, lineno, msg);
            goto out;
        }
    }
    rc = JG_OK;
out:
    free(line);
    if (f)
        fclose(f);
    return rc;
}

static void default_id(jg_worker_opts_t *o)
{
    char host[256] = "host";
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.'))
            *p = '-';
    host[48] = '\0';
    unsigned r = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL) ^ (unsigned)random();
    snprintf(o->id, sizeof o->id, "%s-%d-%04x", host, (int)getpid(), r & 0xffff);
}

/* Long flags as "--name value" or "--name=value"; a few short ones. */
static const struct { const char *name; char shortopt; int has_value; } flags[] = {
    {"queue", 'q', 1},     {"type", 't', 1}, {"concurrency", 'c', 1}, {"grace", 0, 1},
    {"id", 0, 1},          {"config", 0, 1}, {"help", 'h', 0},         {"version", 0, 0},
    {"check", 0, 0},
};

int jg_worker_opts_parse(jg_worker_opts_t *o, int argc, char **argv, char *err, size_t errlen)
{
    parse_state_t st = {0, 0};
    memset(o, 0, sizeof *o);
    o->concurrency = 1;
    o->grace = 30;

    /* two passes: --config first, so that the command line overrides the file */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 1; i < argc; i++) {
            const char *a = argv[i], *value = NULL, *name = NULL;
            size_t nlen = 0;
            int k = -1;
            if (a[0] == '-' && a[1] == '-') {
                const char *eq = strchr(a + 2, '=');
                nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
                for (size_t j = 0; j < JG_ARRAY_LEN(flags); j++)
                    if (strlen(flags[j].name) == nlen && memcmp(flags[j].name, a + 2, nlen) == 0)
                        k = (int)j;
                if (eq && k >= 0) {
                    if (!flags[k].has_value)
                        return fail(err, errlen, "flag takes no value", a);
                    value = eq + 1;
                }
            } else if (a[0] == '-' && a[1] && a[2] == '\0') {
                for (size_t j = 0; j < JG_ARRAY_LEN(flags); j++)
                    if (flags[j].shortopt == a[1])
                        k = (int)j;
            }
            if (k < 0)
                return fail(err, errlen, "unknown argument", a);
            name = flags[k].name;
            if (flags[k].has_value && value == NULL) {
                if (i + 1 >= argc)
                    return fail(err, errlen, "missing value for", a);
                value = argv[++i];
            }
            if (pass == 0) {
                if (strcmp(name, "config") == 0)
                    snprintf(o->config_file, sizeof o->config_file, "%s", value);
                else if (strcmp(name, "help") == 0)
                    o->action = JG_WORKER_HELP;
                else if (strcmp(name, "version") == 0 && o->action != JG_WORKER_HELP)
                    o->action = JG_WORKER_VERSION;
                else if (strcmp(name, "check") == 0 && o->action == JG_WORKER_RUN)
                    o->action = JG_WORKER_CHECK;
                continue;
            }
            if (strcmp(name, "config") == 0 || !flags[k].has_value)
                continue;
            if (set_option(o, &st, 1, name, value, err, errlen))
                return JG_ERR;
        }
        if (pass == 0) {
            if (o->action == JG_WORKER_HELP || o->action == JG_WORKER_VERSION)
                return JG_OK;
            if (o->config_file[0] && read_config_file(o, &st, err, errlen))
                return JG_ERR;
        }
    }
    if (o->nqueues == 0)
        add_queue(o, "default", err, errlen);
    /* --check reports a missing type itself, with the rest of the settings */
    if (o->ntypes == 0 && o->action != JG_WORKER_CHECK) {
        snprintf(err, errlen, "%s", JG_WORKER_NO_TYPES);
        return JG_ERR;
    }
    if (o->id[0] == '\0')
        default_id(o);
    return JG_OK;
}

void jg_worker_opts_free(jg_worker_opts_t *o) { clear_types(o); }

const char *jg_worker_command(const jg_worker_opts_t *o, const char *type)
{
    for (int i = 0; i < o->ntypes; i++)
        if (strcmp(o->types[i].name, type) == 0)
            return o->types[i].command;
    return NULL;
}

void jg_worker_opts_print(const jg_worker_opts_t *o, FILE *out)
{
    fprintf(out, "id=%s\n", o->id);
    for (int i = 0; i < o->nqueues; i++)
        fprintf(out, "queue=%s\n", o->queues[i]);
    for (int i = 0; i < o->ntypes; i++)
        fprintf(out, "type=%s=%s\n", o->types[i].name, o->types[i].command);
    fprintf(out, "concurrency=%d\ngrace=%g\nconfig=%s\n", o->concurrency, o->grace,
            o->config_file);
}
