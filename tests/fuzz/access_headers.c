/* access_headers.c — fuzzes what shared/access.c reads from request headers and settings: the
 * Authorization header (jg_bearer_token), REMOTE_ADDR and X-Forwarded-For (jg_client_addr) and
 * a token list (jg_token_listed). After a first byte that picks the token buffer's size and
 * trust_proxy, the input is split at its first two NUL bytes: the Authorization header (also
 * used as REMOTE_ADDR), X-Forwarded-For, a token list. Properties: a
 * token found fits, is not empty and has no surrounding space; a client address is "unknown"
 * or an IP address that reads back (inet_pton); a token listed is found by its own digest. */
#include <arpa/inet.h>
#include <openssl/sha.h>
#include <string.h>

#include "access.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cap = 1 + (data[0] & 0x3F);
    int trust = data[0] >> 7;
    char *all = fuzz_cstr(data + 1, size - 1);
    const char *header = all, *xff = "", *list = "";
    size_t n = size - 1, hlen = strlen(header);
    if (hlen < n) {
        xff = all + hlen + 1;
        size_t xlen = strlen(xff);
        if (hlen + 1 + xlen < n)
            list = xff + xlen + 1;
    }

    char *tok = malloc(cap);
    if (tok == NULL)
        abort();
    if (jg_bearer_token(header, tok, cap)) {
        size_t tlen = strnlen(tok, cap);
        FUZZ_CHECK(tlen > 0 && tlen < cap, "token of %zu bytes in %zu", tlen, cap);
        FUZZ_CHECK(tok[0] != ' ' && tok[tlen - 1] != ' ', "token with surrounding space: [%s]",
                   tok);
        unsigned char md[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)tok, tlen, md);
        char one[600];
        snprintf(one, sizeof one, " x , %s ,", tok);
        if (strchr(tok, ',') == NULL)
            FUZZ_CHECK(jg_token_listed(one, md) == 1, "token [%s] not found in [%s]", tok, one);
        jg_token_listed(list, md);
    }
    free(tok);

    char addr[64];
    jg_client_addr(header, xff, trust, addr, sizeof addr);
    FUZZ_CHECK(memchr(addr, '\0', sizeof addr) != NULL, "address not terminated");
    unsigned char bin[16];
    FUZZ_CHECK(strcmp(addr, "unknown") == 0 || inet_pton(AF_INET, addr, bin) == 1 ||
                   inet_pton(AF_INET6, addr, bin) == 1,
               "client address [%s]", addr);
    free(all);
    return 0;
}
