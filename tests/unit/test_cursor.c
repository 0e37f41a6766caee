/* test_cursor.c — unit tests of shared/cursor.c: log cursors as clients send them. */
#include <stdint.h>

#include "cursor.h"
#include "unit.h"

UNIT_TEST(cursor_parses_ms_and_ms_seq)
{
    uint64_t ms = 7, seq = 7;
    EXPECT_INT_EQ(0, jg_cursor_parse("1700000000000-3", &ms, &seq));
    EXPECT_UINT_EQ(1700000000000ULL, ms);
    EXPECT_UINT_EQ(3, seq);
    EXPECT_INT_EQ(0, jg_cursor_parse("42", &ms, &seq));
    EXPECT_UINT_EQ(42, ms);
    EXPECT_UINT_EQ(0, seq);
    EXPECT_INT_EQ(0, jg_cursor_parse("18446744073709551615", &ms, &seq));
    EXPECT_UINT_EQ(UINT64_MAX, ms);
    EXPECT_INT_EQ(0, jg_cursor_parse("18446744073709551614-18446744073709551615", &ms, &seq));
    EXPECT_UINT_EQ(UINT64_MAX, seq);
    EXPECT_INT_EQ(0, jg_cursor_parse("18446744073709551615-18446744073709551614", &ms, &seq));
}

UNIT_TEST(cursor_refuses_overflow_the_last_id_and_junk)
{
    const char *bad[] = {"18446744073709551615-18446744073709551615", "18446744073709551616",
                         "1-18446744073709551616", "99999999999999999999999999", "", "-", "-1",
                         "1-", "1--2", "1-2-3", " 1", "1 ", "+1", "1-+2", "0x10", "1.5", "abc",
                         "1-x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t ms = 7, seq = 7;
        if (!EXPECT_INT_EQ(-1, jg_cursor_parse(bad[i], &ms, &seq)))
            FAIL("cursor \"%s\" was accepted", bad[i]);
        EXPECT_UINT_EQ(7, ms);
        EXPECT_UINT_EQ(7, seq);
    }
    EXPECT_INT_EQ(-1, jg_cursor_parse(NULL, NULL, NULL));
}
