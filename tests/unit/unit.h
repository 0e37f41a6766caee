/* unit.h — jobgate's tiny unit-test framework. A test is a function declared with
 * UNIT_TEST(name) in any .c file of tests/unit/; it registers itself before main() runs
 * (a constructor), and tests/unit/main.c runs them all in file and line order.
 *
 * EXPECT_* checks record a failure (file:line, what was expected, what was got) and let the
 * test go on; ASSERT_* do the same and then return from the test. A test fails if any check
 * failed. The runner prints `ok - name` or `not ok - name: file:line: expected ..., got ...`
 * per test, then `N passed, N failed`, and exits 1 if any failed.
 *
 * `build/unit-tests [SUBSTRING...]` runs only the tests whose names contain one of the
 * substrings. */
#ifndef JG_UNIT_H
#define JG_UNIT_H

#include <stddef.h>
#include <string.h>

typedef struct unit_test {
    const char *name;
    const char *file;
    int line;
    void (*fn)(void);
    struct unit_test *next;
} unit_test_t;

void unit_register(unit_test_t *t);

/* Failure recording, used by the macros. Each returns 1 if the check passed, 0 if it failed. */
void unit_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int unit_check(int ok, const char *file, int line, const char *expr, int want);
int unit_int_eq(long long want, long long got, const char *file, int line, const char *expr);
int unit_uint_eq(unsigned long long want, unsigned long long got, const char *file, int line,
                 const char *expr);
int unit_mem_eq(const void *want, size_t wlen, const void *got, size_t glen, const char *file,
                int line, const char *expr);
int unit_str_eq(const char *want, const char *got, const char *file, int line, const char *expr);
int unit_str_contains(const char *haystack, const char *needle, int want, const char *file,
                      int line, const char *expr);

#define UNIT_TEST(name)                                                                   \
    static void unit_fn_##name(void);                                                     \
    static unit_test_t unit_rec_##name = {#name, __FILE__, __LINE__, unit_fn_##name, NULL}; \
    __attribute__((constructor)) static void unit_reg_##name(void)                        \
    {                                                                                     \
        unit_register(&unit_rec_##name);                                                  \
    }                                                                                     \
    static void unit_fn_##name(void)

#define EXPECT_TRUE(e)  unit_check(!!(e), __FILE__, __LINE__, #e, 1)
#define EXPECT_FALSE(e) unit_check(!(e), __FILE__, __LINE__, #e, 0)
#define EXPECT_INT_EQ(want, got) unit_int_eq((long long)(want), (long long)(got), __FILE__, __LINE__, #got)
#define EXPECT_UINT_EQ(want, got)                                                        \
    unit_uint_eq((unsigned long long)(want), (unsigned long long)(got), __FILE__, __LINE__, #got)
#define EXPECT_STR_EQ(want, got) unit_str_eq((want), (got), __FILE__, __LINE__, #got)
#define EXPECT_MEM_EQ(want, wlen, got, glen) \
    unit_mem_eq((want), (wlen), (got), (glen), __FILE__, __LINE__, #got)
#define EXPECT_CONTAINS(hay, needle) unit_str_contains((hay), (needle), 1, __FILE__, __LINE__, #hay)
#define EXPECT_NOT_CONTAINS(hay, needle) \
    unit_str_contains((hay), (needle), 0, __FILE__, __LINE__, #hay)
#define FAIL(...) unit_fail(__FILE__, __LINE__, __VA_ARGS__)

#define ASSERT_TRUE(e)           do { if (!EXPECT_TRUE(e)) return; } while (0)
#define ASSERT_FALSE(e)          do { if (!EXPECT_FALSE(e)) return; } while (0)
#define ASSERT_INT_EQ(want, got) do { if (!EXPECT_INT_EQ(want, got)) return; } while (0)
#define ASSERT_STR_EQ(want, got) do { if (!EXPECT_STR_EQ(want, got)) return; } while (0)

#endif
