/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Where records go, live or replayed: the recorder, the user-space
 * summary, the tw_reuse checker, and the printed output.
 */
#ifndef CT_PIPELINE_H
#define CT_PIPELINE_H

#include <stdbool.h>
#include "closetrace.h"
#include "correlate.h"
#include "output.h"
#include "options.h"
#include "summary.h"
#include "trace_file.h"
#include "tw_reuse.h"
#include "watch.h"

struct pipeline {
	struct ct_output out;
	struct correlator corr;
	bool print;		  /* render records (table or JSON) */
	struct recorder *rec;	  /* -w */
	struct summary_view *sum; /* --summary */
	bool sum_from_records;	  /* replay: aggregate records here (live: the kernel does) */
	int top;
	struct tw_reuse *twr;	  /* --tw-reuse */
	struct watch *watch;	  /* --watch, live runs */
	int rec_err;		  /* first recording error (-errno) */
};

/*
 * Output settings from the options; print decides whether records are
 * shown, sum_from_records whether --summary counts them here.
 */
int pipeline_init(struct pipeline *p, const struct ct_options *o, bool print,
		  bool sum_from_records, int64_t mono_to_real_ns);
void pipeline_record(struct pipeline *p, const struct ct_record *r);
/* the closing lines: summary, tw_reuse totals, stats (when known) */
void pipeline_finish(struct pipeline *p, const struct ct_stats *stats);
void pipeline_free(struct pipeline *p);

#endif
