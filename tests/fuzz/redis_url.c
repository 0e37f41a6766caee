/* redis_url.c — fuzzes REDIS_URL as jg_config_load_env (shared/config.c) reads it from the
 * environment. Properties: no crash; a URL accepted has a host or a socket path and a port and
 * db in range, and its printable form is made of user, host, port and db only (never the
 * password; for redis+cluster:// user and seeds); a URL refused gets an error
 * that names the variable and never shows the password either. */
#include <string.h>

#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = fuzz_cstr(data, size);
    if (strlen(url) != size) {   /* the environment cannot carry a NUL */
        free(url);
        return 0;
    }
    setenv("REDIS_URL", url, 1);
    jg_config_t cfg;
    char err[256] = "";
    int rc = jg_config_load_env(&cfg, err, sizeof err);
    if (rc == 0) {
        FUZZ_CHECK(cfg.redis_unix[0] || cfg.redis_host[0], "no host and no socket from %s", url);
        FUZZ_CHECK(cfg.redis_port >= 1 && cfg.redis_port <= 65535, "port %d", cfg.redis_port);
        FUZZ_CHECK(cfg.redis_db >= 0, "db %d", cfg.redis_db);
        if (cfg.redis_cluster) {
            /* redis+cluster://: user and the seeds as parsed, db 0 */
            char want[sizeof cfg.redis_url_masked + sizeof cfg.redis_seeds + 160];
            snprintf(want, sizeof want, "redis+cluster://%s%s%s%s", cfg.redis_user,
                     cfg.redis_password[0] ? ":***" : "",
                     (cfg.redis_user[0] || cfg.redis_password[0]) ? "@" : "", cfg.redis_seeds);
            FUZZ_CHECK(strcmp(want, cfg.redis_url_masked) == 0, "printed %s, want %s",
                       cfg.redis_url_masked, want);
            FUZZ_CHECK(cfg.redis_db == 0 && cfg.redis_seeds[0], "db %d, seeds %s", cfg.redis_db,
                       cfg.redis_seeds);
            FUZZ_CHECK(strpbrk(cfg.redis_seeds, "@/? ") == NULL, "seeds %s", cfg.redis_seeds);
        } else if (cfg.redis_unix[0] == '\0') {
            /* the printable form is made of user, host, port and db alone: whatever the
             * password and however the URL spelled things, it cannot show */
            char want[sizeof cfg.redis_url_masked];
            int v6 = strchr(cfg.redis_host, ':') != NULL;
            snprintf(want, sizeof want, "redis://%s%s%s%s%s%s:%d/%d", cfg.redis_user,
                     cfg.redis_password[0] ? ":***" : "",
                     (cfg.redis_user[0] || cfg.redis_password[0]) ? "@" : "", v6 ? "[" : "",
                     cfg.redis_host, v6 ? "]" : "", cfg.redis_port, cfg.redis_db);
            FUZZ_CHECK(strcmp(want, cfg.redis_url_masked) == 0, "printed %s, want %s",
                       cfg.redis_url_masked, want);
        } else {
            FUZZ_CHECK(cfg.redis_password[0] == '\0', "a password with a unix socket");
        }
    } else {
        FUZZ_CHECK(strstr(err, "REDIS_URL") != NULL, "error %s does not name REDIS_URL", err);
    }
    unsetenv("REDIS_URL");
    free(url);
    return 0;
}
