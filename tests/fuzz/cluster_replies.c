/* cluster_replies.c — fuzzes what shared/cluster.c reads from Redis and from its own callers:
 * the input is tried as a MOVED/ASK error text (jg_cluster_parse_redirect), as the bytes of a
 * CLUSTER SLOTS reply (read by hiredis with jobgate's bounded reply functions, shared/replyreader.c,
 * then jg_cluster_load_map) and as a command in the wire format (jg_cluster_route). Properties:
 * no crash; a redirection read has a slot below 16384, a port 1..65535 and a host of visible
 * characters that fits; a reply refused by the reader says why, and one still arriving never
 * waits longer than the bound; a map read maps at most 16384 slots, each to a node with a valid
 * port, and a refused reply leaves the map as it was; a key found lies inside the command. */
#include <string.h>

#include "cluster.h"
#include "config.h"
#include "fuzz.h"
#include "replyreader.h"

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

    jg_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.redis_seeds, sizeof cfg.redis_seeds, "127.0.0.1:7000");
    jg_cluster_t *cl = jg_cluster_new(&cfg);
    /* Every input goes through jobgate's bounded reader (shared/replyreader.c), as every reply
     * does: "*420533333" is refused, not allocated. A small bulk bound (4 KiB, below the 64 KiB
     * of a line) lets inputs reach the refusal of an item still arriving; the input is fed in two pieces, cut where its first
     * byte says, so that a split reads as the whole. */
    redisReader *rd = redisReaderCreate();
    jg_reply_bound(rd, 4096);
    void *rep = NULL;
    char why[128] = "";
    size_t cut = size ? (unsigned char)in[0] % (size + 1) : 0;
    redisReaderFeed(rd, in, cut);
    int rc = jg_reply_read(rd, &rep, why, sizeof why);
    if (rc == 0 && rep == NULL) {
        redisReaderFeed(rd, in + cut, size - cut);
        rc = jg_reply_read(rd, &rep, why, sizeof why);
    }
    FUZZ_CHECK(rc == 0 || (why[0] && rep == NULL), "refused without a reason, or with a reply");
    FUZZ_CHECK(rc != 0 || rep || rd->len - rd->pos <= JG_REPLY_MAX_LINE,
               "%zu bytes of an item waiting, not refused", rd->len - rd->pos);
    if (rc == 0 && rep) {
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
