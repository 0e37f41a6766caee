/* main.c — the unit-test runner (see unit.h): runs every registered test in file and line order,
 * one result line each, then `N passed, N failed`; exit status 1 if any failed. */
#include "unit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unit_test_t *tests;
static size_t ntests;

/* State of the running test. */
static char first_failure[1024];
static int failures;

void unit_register(unit_test_t *t)
{
    t->next = tests;
    tests = t;
    ntests++;
}

void unit_fail(const char *file, int line, const char *fmt, ...)
{
    if (failures++ == 0) {
        int n = snprintf(first_failure, sizeof first_failure, "%s:%d: ", file, line);
        if (n < 0 || (size_t)n >= sizeof first_failure)
            return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(first_failure + n, sizeof first_failure - (size_t)n, fmt, ap);
        va_end(ap);
    }
}

int unit_check(int ok, const char *file, int line, const char *expr, int want)
{
    if (!ok)
        unit_fail(file, line, "expected %s to be %s, got %s", expr, want ? "true" : "false",
                  want ? "false" : "true");
    return ok;
}

int unit_int_eq(long long want, long long got, const char *file, int line, const char *expr)
{
    if (want != got)
        unit_fail(file, line, "expected %s == %lld, got %lld", expr, want, got);
    return want == got;
}

int unit_uint_eq(unsigned long long want, unsigned long long got, const char *file, int line,
                 const char *expr)
{
    if (want != got)
        unit_fail(file, line, "expected %s == %llu (0x%llx), got %llu (0x%llx)", expr, want, want,
                  got, got);
    return want == got;
}

/* Writes s[0..len) quoted, C-escaped and cut to about max bytes into out. */
static void show(char *out, size_t cap, const void *s, size_t len, size_t max)
{
    const unsigned char *p = s;
    size_t o = 0;
    if (p == NULL) {
        snprintf(out, cap, "NULL");
        return;
    }
    out[o++] = '"';
    for (size_t i = 0; i < len && o + 8 < cap; i++) {
        if (i == max) {
            o += (size_t)snprintf(out + o, cap - o, "...");
            break;
        }
        unsigned char c = p[i];
        if (c == '"' || c == '\\')
            o += (size_t)snprintf(out + o, cap - o, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    if (o + 2 <= cap) {
        out[o++] = '"';
        out[o] = '\0';
    } else {
        out[cap - 1] = '\0';
    }
}

int unit_mem_eq(const void *want, size_t wlen, const void *got, size_t glen, const char *file,
                int line, const char *expr)
{
    if (want && got && wlen == glen && memcmp(want, got, wlen) == 0)
        return 1;
    if (want == NULL && got == NULL)
        return 1;
    char w[400], g[400];
    size_t at = 0;
    if (want && got)
        while (at < wlen && at < glen && ((const char *)want)[at] == ((const char *)got)[at])
            at++;
    show(w, sizeof w, want, wlen, 160);
    show(g, sizeof g, got, glen, 160);
    unit_fail(file, line, "expected %s == %s, got %s (first difference at byte %zu)", expr, w, g,
              at);
    return 0;
}

int unit_str_eq(const char *want, const char *got, const char *file, int line, const char *expr)
{
    return unit_mem_eq(want, want ? strlen(want) : 0, got, got ? strlen(got) : 0, file, line,
                       expr);
}

int unit_str_contains(const char *haystack, const char *needle, int want, const char *file,
                      int line, const char *expr)
{
    int has = haystack && needle && strstr(haystack, needle) != NULL;
    if (has != want) {
        char h[400], n[200];
        show(h, sizeof h, haystack, haystack ? strlen(haystack) : 0, 160);
        show(n, sizeof n, needle, needle ? strlen(needle) : 0, 80);
        unit_fail(file, line, "expected %s %s %s, got %s", expr, want ? "to contain" : "not to contain",
                  n, h);
    }
    return has == want;
}

static int by_place(const void *a, const void *b)
{
    const unit_test_t *x = *(const unit_test_t *const *)a, *y = *(const unit_test_t *const *)b;
    int r = strcmp(x->file, y->file);
    return r ? r : (x->line > y->line) - (x->line < y->line);
}

static int selected(const unit_test_t *t, int argc, char **argv)
{
    if (argc < 2)
        return 1;
    for (int i = 1; i < argc; i++)
        if (strstr(t->name, argv[i]))
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    unit_test_t **list = calloc(ntests ? ntests : 1, sizeof *list);
    if (list == NULL)
        return 2;
    size_t n = 0;
    for (unit_test_t *t = tests; t; t = t->next)
        list[n++] = t;
    qsort(list, n, sizeof *list, by_place);

    setvbuf(stdout, NULL, _IOLBF, 0);
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (!selected(list[i], argc, argv))
            continue;
        failures = 0;
        first_failure[0] = '\0';
        list[i]->fn();
        if (failures == 0) {
            printf("ok - %s\n", list[i]->name);
            passed++;
        } else {
            if (failures > 1)
                printf("not ok - %s: %s (and %d more failed checks)\n", list[i]->name,
                       first_failure, failures - 1);
            else
                printf("not ok - %s: %s\n", list[i]->name, first_failure);
            failed++;
        }
    }
    free(list);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
