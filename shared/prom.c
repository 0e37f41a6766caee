/* prom.c — Prometheus text format 0.0.4 for GET /metrics (see prom.h). */
#include "prom.h"

#include <string.h>

void jg_prom_label_value(jg_buf_t *out, const char *v)
{
    jg_buf_putc(out, '"');
    for (; *v; v++) {
        if (*v == '\\')
            jg_buf_puts(out, "\\\\");
        else if (*v == '"')
            jg_buf_puts(out, "\\\"");
        else if (*v == '\n')
            jg_buf_puts(out, "\\n");
        else
            jg_buf_putc(out, *v);
    }
    jg_buf_putc(out, '"');
}

static void family(jg_buf_t *out, const char *name, const char *type, const char *help)
{
    jg_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{queue="..",type=".."[,extra="value"] */
static void labels_qt(jg_buf_t *out, const char *name, const char *queue, const char *type)
{
    jg_buf_printf(out, "%s{queue=", name);
    jg_prom_label_value(out, queue);
    jg_buf_puts(out, ",type=");
    jg_prom_label_value(out, type);
}

void jg_prom_write(const jg_stats_t *s, jg_buf_t *out)
{
    family(out, "jobgate_jobs_submitted_total", "counter", "Jobs submitted, by queue and type.");
    for (size_t i = 0; i < s->nqueues; i++)
        for (size_t j = 0; j < s->queues[i].ntypes; j++) {
            const jg_type_stats_t *t = &s->queues[i].types[j];
            labels_qt(out, "jobgate_jobs_submitted_total", s->queues[i].name, t->type);
            jg_buf_printf(out, "} %lld\n", t->submitted);
        }

    family(out, "jobgate_jobs_finished_total", "counter",
           "Jobs finished, by queue, type and final status (done, failed, cancelled).");
    for (size_t i = 0; i < s->nqueues; i++)
        for (size_t j = 0; j < s->queues[i].ntypes; j++) {
            const jg_type_stats_t *t = &s->queues[i].types[j];
            const char *st[3] = {"done", "failed", "cancelled"};
            long long v[3] = {t->done, t->failed, t->cancelled};
            for (int k = 0; k < 3; k++) {
                labels_qt(out, "jobgate_jobs_finished_total", s->queues[i].name, t->type);
                jg_buf_printf(out, ",status=\"%s\"} %lld\n", st[k], v[k]);
            }
        }

    family(out, "jobgate_queue_jobs", "gauge",
           "Jobs of a queue by state: queued (ready to run), delayed (waiting for run_at), running.");
    for (size_t i = 0; i < s->nqueues; i++) {
        const jg_queue_stats_t *q = &s->queues[i];
        const char *st[3] = {"queued", "delayed", "running"};
        long long v[3] = {q->queued, q->delayed, q->running};
        for (int k = 0; k < 3; k++) {
            jg_buf_puts(out, "jobgate_queue_jobs{queue=");
            jg_prom_label_value(out, q->name);
            jg_buf_printf(out, ",state=\"%s\"} %lld\n", st[k], v[k]);
        }
    }

    family(out, "jobgate_queue_latency_seconds", "gauge",
           "Seconds the longest-waiting job at the head of a queue's ready sets has been ready.");
    for (size_t i = 0; i < s->nqueues; i++) {
        jg_buf_puts(out, "jobgate_queue_latency_seconds{queue=");
        jg_prom_label_value(out, s->queues[i].name);
        jg_buf_printf(out, "} %.3f\n", (double)s->queues[i].latency_ms / 1000.0);
    }

    family(out, "jobgate_queue_paused", "gauge", "1 while a queue is paused, else 0.");
    for (size_t i = 0; i < s->nqueues; i++) {
        jg_buf_puts(out, "jobgate_queue_paused{queue=");
        jg_prom_label_value(out, s->queues[i].name);
        jg_buf_printf(out, "} %d\n", s->queues[i].paused);
    }

    family(out, "jobgate_workers", "gauge", "Live workers (their heartbeat has not expired).");
    jg_buf_printf(out, "jobgate_workers %zu\n", s->nworkers);

    family(out, "jobgate_cache_requests_total", "counter",
           "Result cache lookups (GET/HEAD /cache/{key}, POST /jobs with cache: true).");
    jg_buf_printf(out, "jobgate_cache_requests_total{result=\"hit\"} %lld\n", s->cache_hits);
    jg_buf_printf(out, "jobgate_cache_requests_total{result=\"miss\"} %lld\n", s->cache_misses);

    family(out, "jobgate_job_run_seconds", "histogram",
           "Run time of attempts, as their workers reported their end (complete.lua).");
    for (size_t i = 0; i < s->nqueues; i++)
        for (size_t j = 0; j < s->queues[i].ntypes; j++) {
            const jg_type_stats_t *t = &s->queues[i].types[j];
            long long cum = 0;
            for (int k = 0; k <= JG_RUN_BUCKETS; k++) {
                cum += t->run_le[k];
                labels_qt(out, "jobgate_job_run_seconds_bucket", s->queues[i].name, t->type);
                jg_buf_printf(out, ",le=\"%s\"} %lld\n",
                              k < JG_RUN_BUCKETS ? jg_run_bucket_bounds[k] : "+Inf", cum);
            }
            labels_qt(out, "jobgate_job_run_seconds_sum", s->queues[i].name, t->type);
            jg_buf_printf(out, "} %lld.%03lld\n", t->run_sum_ms / 1000, t->run_sum_ms % 1000);
            labels_qt(out, "jobgate_job_run_seconds_count", s->queues[i].name, t->type);
            jg_buf_printf(out, "} %lld\n", t->run_count);
        }
}
