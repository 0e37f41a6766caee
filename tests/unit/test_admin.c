/* test_admin.c — unit tests of jobgate-admin's pure parts: the Prometheus text writer (label
 * escaping, cumulative histogram buckets, sums) and the /stats JSON of given figures. */
#include "adminstats.h"
#include "buf.h"
#include "prom.h"
#include "unit.h"

#include <string.h>

UNIT_TEST(prom_label_values_are_escaped)
{
    jg_buf_t b = JG_BUF_INIT;
    jg_prom_label_value(&b, "a\\b\"c\nd");
    EXPECT_STR_EQ("\"a\\\\b\\\"c\\nd\"", b.data);
    jg_buf_free(&b);
}

static jg_stats_t one_queue(jg_queue_stats_t *q, jg_type_stats_t *t)
{
    memset(q, 0, sizeof *q);
    memset(t, 0, sizeof *t);
    strcpy(q->name, "default");
    q->queued = 2, q->running = 1, q->delayed = 3, q->paused = 1, q->latency_ms = 1500;
    strcpy(t->type, "echo");
    t->submitted = 9, t->done = 5, t->failed = 2, t->cancelled = 1;
    t->run_count = 4, t->run_sum_ms = 12345;
    t->run_le[0] = 1;                /* <= 0.01 s */
    t->run_le[6] = 2;                /* <= 1 s */
    t->run_le[JG_RUN_BUCKETS] = 1;   /* > 3600 s */
    q->types = t, q->ntypes = 1;
    jg_stats_t s;
    memset(&s, 0, sizeof s);
    s.queues = q, s.nqueues = 1, s.cache_hits = 7, s.cache_misses = 8;
    return s;
}

UNIT_TEST(prom_histogram_buckets_are_cumulative_with_sum_and_count)
{
    jg_queue_stats_t q;
    jg_type_stats_t t;
    jg_stats_t s = one_queue(&q, &t);
    jg_buf_t b = JG_BUF_INIT;
    jg_prom_write(&s, &b);
    EXPECT_CONTAINS(b.data, "# TYPE jobgate_job_run_seconds histogram\n");
    EXPECT_CONTAINS(b.data, "jobgate_job_run_seconds_bucket{queue=\"default\",type=\"echo\",le=\"0.01\"} 1\n");
    EXPECT_CONTAINS(b.data, "jobgate_job_run_seconds_bucket{queue=\"default\",type=\"echo\",le=\"0.5\"} 1\n");
    EXPECT_CONTAINS(b.data, "jobgate_job_run_seconds_bucket{queue=\"default\",type=\"echo\",le=\"1\"} 3\n");
    EXPECT_CONTAINS(b.data, "jobgate_job_run_seconds_bucket{queue=\"default\",type=\"echo\",le=\"3600\"} 3\n");
    EXPECT_CONTAINS(b.data, "jobgate_job_run_seconds_bucket{queue=\"default\",type=\"echo\",le=\"+Inf\"} 4\n");
    EXPECT_CONTAINS(b.data, "jobgate_job_run_seconds_sum{queue=\"default\",type=\"echo\"} 12.345\n");
    EXPECT_CONTAINS(b.data, "jobgate_job_run_seconds_count{queue=\"default\",type=\"echo\"} 4\n");
    EXPECT_CONTAINS(b.data, "jobgate_jobs_finished_total{queue=\"default\",type=\"echo\",status=\"cancelled\"} 1\n");
    EXPECT_CONTAINS(b.data, "jobgate_queue_jobs{queue=\"default\",state=\"delayed\"} 3\n");
    EXPECT_CONTAINS(b.data, "jobgate_queue_latency_seconds{queue=\"default\"} 1.500\n");
    EXPECT_CONTAINS(b.data, "jobgate_cache_requests_total{result=\"miss\"} 8\n");
    EXPECT_CONTAINS(b.data, "jobgate_workers 0\n");
    jg_buf_free(&b);
}

UNIT_TEST(stats_json_sums_types_into_queue_and_totals)
{
    jg_queue_stats_t q;
    jg_type_stats_t t;
    jg_stats_t s = one_queue(&q, &t);
    jg_worker_info_t w;
    memset(&w, 0, sizeof w);
    strcpy(w.id, "h-1-a");
    strcpy(w.host, "h\"x");
    strcpy(w.queues, "a,b");
    strcpy(w.types, "echo");
    w.pid = 12, w.concurrency = 4, w.running = 1;
    s.workers = &w, s.nworkers = 1;
    jg_buf_t b = JG_BUF_INIT;
    jg_stats_json(&s, &b);
    EXPECT_STR_EQ("{\"queues\":[{\"name\":\"default\",\"queued\":2,\"running\":1,\"delayed\":3,"
                  "\"paused\":true,\"latency\":1.500,\"submitted\":9,\"done\":5,\"failed\":2,"
                  "\"cancelled\":1,\"types\":{\"echo\":{\"submitted\":9,\"done\":5,\"failed\":2,"
                  "\"cancelled\":1}}}],\"totals\":{\"submitted\":9,\"done\":5,\"failed\":2,"
                  "\"cancelled\":1},\"workers\":[{\"id\":\"h-1-a\",\"host\":\"h\\\"x\",\"pid\":12,"
                  "\"queues\":[\"a\",\"b\"],\"types\":[\"echo\"],\"concurrency\":4,\"running\":1,"
                  "\"status\":\"\",\"started_at\":null,\"last_seen\":null}],"
                  "\"cache\":{\"hits\":7,\"misses\":8}}",
                  b.data);
    jg_buf_free(&b);
}
