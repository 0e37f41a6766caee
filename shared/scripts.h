/* scripts.h — the Redis Lua scripts of redis/NAME.lua, compiled into every program by
 * tools/embed-lua.sh. Each is run with EVALSHA and loaded again on NOSCRIPT (see redis.h);
 * docs/redis.md documents what each one does, its KEYS and ARGV. */
#ifndef JG_SCRIPTS_H
#define JG_SCRIPTS_H

#include <stddef.h>

typedef struct jg_script {
    const char *name;     /* file name without .lua, e.g. "submit" */
    const char *source;
    const char *sha1;     /* hex SHA-1 of source, as SCRIPT LOAD answers */
} jg_script_t;

extern const jg_script_t jg_scripts[];
extern const size_t jg_script_count;

/* The script called name; aborts if there is none (a programming error, caught by any test). */
const jg_script_t *jg_script(const char *name);

#endif
