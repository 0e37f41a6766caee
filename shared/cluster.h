/* cluster.h — Redis Cluster behind the one Redis call path (redis.h). With
 * REDIS_URL=redis+cluster://[user:password@]host:port[,host:port...] every jg_redis_t carries a
 * jg_cluster_t, and redis.c hands each command to it instead of to its one connection; callers
 * see no difference. This file owns:
 *   - key slots: CRC16 of the key, or of its {tag} (jg_cluster_key_slot);
 *   - which key a command names (a table of the commands jobgate sends: the key position;
 *     EVALSHA/EVAL: the first KEYS entry); a keyless command (PING, SUBSCRIBE, ...) goes to the
 *     "home" node, the one r->ctx points at; SCRIPT LOAD goes to every master;
 *   - the slot map, from CLUSTER SLOTS, read before the first command with a key, after any MOVED
 *     and after a node failed;
 *   - one connection per node per jg_redis_t, opened on first use (AUTH as for one Redis; never
 *     SELECT: a cluster has database 0 alone);
 *   - MOVED (the slot is remapped and the map read again), ASK (ASKING, then the command, on the
 *     node named), NOSCRIPT on a node (the script is loaded there and the call made again),
 *     TRYAGAIN (nothing ran: the slot is being migrated; sent again from the slot's master
 *     with a growing wait, for at most JG_CLUSTER_MIGRATION_WAIT_MS, then "unavailable") and
 *     CLUSTERDOWN (NULL: "unavailable");
 *   - pipelines across nodes: each command goes to its node, the replies come back in the order
 *     the commands were appended.
 * A node whose connection fails is dropped and the map read again on the next call, so a
 * replica the cluster promoted is followed with no restart. As for one Redis, a NULL reply means
 * "unavailable" (503), and a command that failed in flight is not sent again. */
#ifndef JG_CLUSTER_H
#define JG_CLUSTER_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define JG_CLUSTER_SLOTS 16384
/* How long a call (or one pipeline's replies together) waits through TRYAGAIN answers, i.e. a
 * resharding of its slot, before it is "unavailable" (docs/redis.md, "Redis Cluster"). */
#define JG_CLUSTER_MIGRATION_WAIT_MS 5000

struct jg_redis;
typedef struct jg_cluster jg_cluster_t;

/* A cluster state with cfg's seeds as the known nodes and no connection. Aborts when out of
 * memory. Freed with jg_cluster_free(), which closes every connection. */
jg_cluster_t *jg_cluster_new(const jg_config_t *cfg);
void jg_cluster_free(jg_cluster_t *cl);

/* Closes every node connection and forgets pending pipelined replies; the map is read again
 * before the next command with a key. r->ctx (the home node's connection) becomes NULL. */
void jg_cluster_close_all(struct jg_redis *r);

/* Connects the home node (r->ctx) to the first known node that answers (the nodes of the map,
 * then the seeds). Returns 0, or -1 with the last error in why. */
int jg_cluster_open_home(struct jg_redis *r, char *why, size_t whylen);

/* One command, already in the wire format (redisFormatCommand*): sent to the node of its key,
 * redirections followed. Returns as jg_redis_cmd (NULL: unavailable). */
redisReply *jg_cluster_call(struct jg_redis *r, const char *cmd, size_t len);

/* Pipelining: 0, or -1 when the command's node is unreachable (nothing appended). */
int jg_cluster_append(struct jg_redis *r, const char *cmd, size_t len);
/* Reads every reply still pending (jg_redis_barrier). */
void jg_cluster_barrier(struct jg_redis *r);
/* The next reply in append order; NULL when its node failed (the later ones are dropped). A
 * command still refused with TRYAGAIN after JG_CLUSTER_MIGRATION_WAIT_MS keeps that error as its
 * reply (it did not run: the caller may send it again later). */
redisReply *jg_cluster_get_reply(struct jg_redis *r);

/* Is rep a TRYAGAIN error: a command Redis (or a jobgate script's resharding guard) refused
 * without running any of it because its slot is being migrated? Safe to send again. */
int jg_cluster_is_tryagain(const redisReply *rep);

/* ---- pure parts (unit tests and fuzzing) ---- */

/* The slot of a key: CRC16 (XMODEM) of the key, or of the part between the first '{' and the
 * next '}' when that part is not empty, mod 16384. */
unsigned jg_cluster_key_slot(const char *key, size_t len);

/* Where a command goes: JG_ROUTE_KEY with its first key in key and keylen, JG_ROUTE_ANY (no key),
 * JG_ROUTE_ALL (SCRIPT LOAD, SCRIPT FLUSH: every master), or -1 when cmd is not a well-formed
 * command in the wire format (*N\r\n then N times $len\r\nbytes\r\n). */
enum { JG_ROUTE_KEY, JG_ROUTE_ANY, JG_ROUTE_ALL };
int jg_cluster_route(const char *cmd, size_t len, const char **key, size_t *keylen);

/* Reads a redirection error text, "MOVED 3999 10.0.0.2:6381" or "ASK 3999 [host]:port" (an empty
 * host means the host of the node asked). Returns 0 and fills *ask (1 for ASK), *slot, host and
 * *port; -1 when msg is no well-formed redirection. */
int jg_cluster_parse_redirect(const char *msg, size_t len, int *ask, int *slot, char *host,
                              size_t hostcap, int *port);

/* Replaces the slot map with a CLUSTER SLOTS reply (asked_host stands in for an empty host).
 * Returns the number of slots mapped, or -1 when the reply is malformed (the map is unchanged). */
int jg_cluster_load_map(jg_cluster_t *cl, const redisReply *rep, const char *asked_host);

/* The master of a slot in the current map: 0 with its host and port, -1 when unmapped. */
int jg_cluster_slot_owner(const jg_cluster_t *cl, unsigned slot, const char **host, int *port);

#endif
