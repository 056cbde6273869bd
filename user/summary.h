/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * --summary: the aggregates, read from the kernel's maps in a live run or
 * rebuilt from the records of a recording, and printed the same way.
 */
#ifndef CT_SUMMARY_H
#define CT_SUMMARY_H

#include <stdbool.h>
#include <stdio.h>
#include "closetrace.h"

struct summary_view;

struct summary_view *summary_new(void);
void summary_free(struct summary_view *v);
void summary_clear(struct summary_view *v);

/* replay: account one raw record (bpf/summary.h, as the kernel does) */
void summary_add(struct summary_view *v, const struct ct_record *r);

/* live: replace the view with the kernel's maps (file descriptors) */
int summary_load_kernel(struct summary_view *v, int summary_fd, int proc_fd, int endpoint_fd);

/* table or one JSON object; top = rows per "top" table */
void summary_print(const struct summary_view *v, FILE *f, bool json, int top);

/* for tests */
const struct ct_summary *summary_totals(const struct summary_view *v);

#endif
