/* access.h — who may call a route, and how often (contract section 8). Owns the bearer-token
 * check (JOBGATE_API_TOKENS, JOBGATE_READ_TOKENS, ?access_token= on the logs route), the
 * caller's identity that scopes Idempotency-Keys, the client address (REMOTE_ADDR, or
 * X-Forwarded-For with JOBGATE_TRUST_PROXY=1) and the Redis-wide rate limit of submits
 * (redis/ratelimit.lua). server.c calls jg_access_check() once per request, after routing and
 * before the handler: before any body is read or any Redis key is touched for the request. */
#ifndef JG_ACCESS_H
#define JG_ACCESS_H

#include <stddef.h>

#include "http.h"

#define JG_TOKEN_MAX 512   /* longest bearer token considered; longer ones never match */

/* Checks req against its route's access class (routes.h), then, for a route flagged
 * JG_ROUTE_RATE_LIMITED with JOBGATE_RATE_LIMIT set, counts it. Returns JG_OK (and fills
 * req->caller when a write token authorized it), or JG_ERR after jg_fail(): 401 unauthorized
 * with WWW-Authenticate, 429 rate_limited with Retry-After, or 503 when Redis could not count
 * it. Never puts a token in a message, a log line or a Redis key. */
int jg_access_check(jg_req_t *req);

/* Is the token whose SHA-256 is digest one of the comma list (surrounding spaces ignored)?
 * Every entry is compared, with CRYPTO_memcmp over SHA-256 digests, so that neither where a
 * token differs nor its length shows in the time taken. Returns 1 or 0. */
int jg_token_listed(const char *list, const unsigned char digest[32]);

/* The bearer token of an Authorization header value ("Bearer <token>", scheme in any case):
 * copied into out (cap bytes). Returns 1 if found, 0 if the header is another scheme or
 * malformed, or the token does not fit. */
int jg_bearer_token(const char *authorization, char *out, size_t cap);

/* The client address, normalized (inet_ntop) into out (cap >= 46): remote (REMOTE_ADDR), or
 * with trust_proxy the last address of xff (X-Forwarded-For), which the trusted proxy in front
 * appended; the addresses before it were sent by the client and are never used. Falls back to
 * remote when xff is absent or its last entry is not an IP address, and to "unknown" when
 * remote is not one either. */
void jg_client_addr(const char *remote, const char *xff, int trust_proxy, char *out, size_t cap);

#endif
