/* prom.h — the Prometheus text exposition format 0.0.4 of jobgate-admin's GET /metrics
 * (contract section 7), written from the figures of adminstats.h. */
#ifndef JG_PROM_H
#define JG_PROM_H

#include "adminstats.h"
#include "buf.h"

/* Appends every metric family (# HELP, # TYPE, samples) of s to out. */
void jg_prom_write(const jg_stats_t *s, jg_buf_t *out);

/* Appends v as a label value: backslash, double quote and line feed escaped as the format says
 * (\\, \", \n). */
void jg_prom_label_value(jg_buf_t *out, const char *v);

#endif
