/* test_loop_parts.c — unit tests of the pure parts of the serving loop: the FastCGI records
 * the loop writes (fcgi.c), the FCGI_WEB_SERVER_ADDRS match (conns.c), and the ring of recent
 * messages that catches a change racing with parking (waitlist.c). */
#include "buf.h"
#include "conns.h"
#include "fcgi.h"
#include "unit.h"
#include "waitlist.h"

#include <stdlib.h>
#include <string.h>

UNIT_TEST(fcgi_stdout_is_split_into_records_of_at_most_65535_bytes)
{
    size_t len = 65535 + 10;
    char *body = malloc(len);
    if (body == NULL)
        abort();
    memset(body, 'a', len);
    jg_buf_t out = JG_BUF_INIT;
    jg_fcgi_put_stdout(&out, 258, body, len);
    ASSERT_INT_EQ(8 + 65535 + 8 + 10, out.len);
    const unsigned char *p = (const unsigned char *)out.data;
    const unsigned char first[8] = {1, 6, 1, 2, 0xff, 0xff, 0, 0};   /* STDOUT, id 258 */
    EXPECT_MEM_EQ(first, 8, p, 8);
    const unsigned char second[8] = {1, 6, 1, 2, 0, 10, 0, 0};
    EXPECT_MEM_EQ(second, 8, p + 8 + 65535, 8);
    jg_buf_free(&out);
    free(body);
}

UNIT_TEST(fcgi_end_is_an_empty_stdout_then_end_request_complete)
{
    jg_buf_t out = JG_BUF_INIT;
    jg_fcgi_put_stdout(&out, 1, "", 0);
    EXPECT_INT_EQ(0, out.len);
    jg_fcgi_put_end(&out, 1);
    const unsigned char want[24] = {1, 6, 0, 1, 0, 0, 0, 0,  1, 3, 0, 1, 0, 8, 0, 0,
                                    0, 0, 0, 0, 0, 0, 0, 0};
    EXPECT_MEM_EQ(want, sizeof want, out.data, out.len);
    jg_buf_free(&out);
}

UNIT_TEST(peer_allowed_matches_whole_addresses_of_the_list)
{
    EXPECT_TRUE(jg_peer_allowed("", "10.0.0.1"));             /* no list: any peer */
    EXPECT_TRUE(jg_peer_allowed("127.0.0.2", "127.0.0.2"));
    EXPECT_FALSE(jg_peer_allowed("127.0.0.2", "127.0.0.1"));
    EXPECT_TRUE(jg_peer_allowed("10.0.0.1, 127.0.0.1", "127.0.0.1"));
    EXPECT_TRUE(jg_peer_allowed("10.0.0.1,::1", "::1"));
    EXPECT_FALSE(jg_peer_allowed("127.0.0.10", "127.0.0.1"));   /* no prefix match */
    EXPECT_FALSE(jg_peer_allowed("127.0.0.1", "127.0.0.10"));
    EXPECT_TRUE(jg_peer_allowed(" , ", "127.0.0.1"));   /* only separators: an empty list */
}

UNIT_TEST(waitlist_a_request_parked_after_a_resync_it_did_not_see_reads_again)
{
    jg_waitlist_t *wl = jg_waitlist_new();
    jg_waiter_t w;
    memset(&w, 0, sizeof w);
    memcpy(w.id, "0123abcd.AAAAAAAAAAAAAAAAAAAAAA", JG_ID_LEN + 1);
    w.seq = 5;   /* the handler read the job when 5 messages had been seen */
    jg_waitlist_note(wl, 6, "0123abcd.BBBBBBBBBBBBBBBBBBBBBB");   /* another job */
    EXPECT_FALSE(jg_waitlist_missed(wl, &w, 6));
    jg_waitlist_note(wl, 7, w.id);                                /* this job */
    EXPECT_TRUE(jg_waitlist_missed(wl, &w, 7));
    w.seq = 7;
    jg_waitlist_note_resync(wl, 8);   /* the subscription came back: anything may have changed */
    EXPECT_TRUE(jg_waitlist_missed(wl, &w, 8));
    w.seq = 8;                        /* read after the resync: nothing missed */
    EXPECT_FALSE(jg_waitlist_missed(wl, &w, 8));
    free(wl);
}
