/* cluster_replies.c — fuzzes what shared/cluster.c reads from Redis and from its own callers:
 * the input is tried as a MOVED/ASK error text (jg_cluster_parse_redirect), as the bytes of a
 * CLUSTER SLOTS reply (read by hiredis, then jg_cluster_load_map) and as a command in the wire
 * format (jg_cluster_route). Properties: no crash; a redirection read has a slot below 16384, a
 * port 1..65535 and a host of visible characters that fits; a map read maps at most 16384 slots,
 * each to a node with a valid port, and a refused reply leaves the map as it was; a key found
 * lies inside the command. */
#include <string.h>

#include "cluster.h"
#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    char host[64];
    int ask = -1, slot = -1, port = -1;
    if (jg_cluster_parse_redirect(in, size, &ask, &slot, host, sizeof host, &port) == 0) {
        FUZZ_CHECK(ask == 0 || ask == 1, "ask %d", ask);
        FUZZ_CHECK(slot >= 0 && slot < JG_CLUSTER_SLOTS, "slot %d", slot);
        FUZZ_CHECK(port >= 1 && port <= 65535, "port %d", port);
        size_t n = strnlen(host, sizeof host);
        FUZZ_CHECK(n < sizeof host, "host not terminated");
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK((unsigned char)host[i] > ' ' && (unsigned char)host[i] < 0x7f,
                       "host byte 0x%02x", (unsigned char)host[i]);
    }

    /* hiredis 0.14's reader allocates an array of the size an aggregate header declares before
     * any element arrives (it has no maxelements; 1.0 has): "*420533333" is gigabytes. Redis is
     * trusted for that, so replies declaring more elements than any CLUSTER SLOTS reply has are
     * not given to the reader (the other two parts still see them). */
    int sane = 1;
    for (size_t i = 0; i + 1 < size && sane; i++)
        if (in[i] == '*') {
            long n = 0;
            for (size_t k = i + 1; k < size && in[k] >= '0' && in[k] <= '9' && n <= 100000; k++)
                n = n * 10 + (in[k] - '0');
            sane = n <= 100000;
        }

    jg_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.redis_seeds, sizeof cfg.redis_seeds, "127.0.0.1:7000");
    jg_cluster_t *cl = jg_cluster_new(&cfg);
    redisReader *rd = redisReaderCreate();
    void *rep = NULL;
    redisReaderFeed(rd, in, size);
    if (sane && redisReaderGetReply(rd, &rep) == REDIS_OK && rep) {
        int mapped = jg_cluster_load_map(cl, rep, "10.0.0.1");
        FUZZ_CHECK(mapped >= -1 && mapped <= JG_CLUSTER_SLOTS, "mapped %d", mapped);
        int seen = 0;
        for (unsigned s = 0; s < JG_CLUSTER_SLOTS; s++) {
            const char *h;
            int p;
            if (jg_cluster_slot_owner(cl, s, &h, &p) == 0) {
                seen++;
                FUZZ_CHECK(p >= 1 && p <= 65535 && h[0], "slot %u: port %d host %s", s, p, h);
            }
        }
        FUZZ_CHECK(seen == (mapped < 0 ? 0 : mapped), "%d slots mapped, %d said", seen, mapped);
        freeReplyObject(rep);
    }
    redisReaderFree(rd);
    jg_cluster_free(cl);

    const char *key = NULL;
    size_t keylen = 0;
    int route = jg_cluster_route(in, size, &key, &keylen);
    FUZZ_CHECK(route >= -1 && route <= JG_ROUTE_ALL, "route %d", route);
    if (route == JG_ROUTE_KEY)
        FUZZ_CHECK(key >= in && key + keylen <= in + size, "key outside the command");
    return 0;
}
