// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "pipeline.h"

static void emit_record(void *ctx, const struct ct_record *r)
{
	struct pipeline *p = ctx;

	output_record(&p->out, r);
}

int pipeline_init(struct pipeline *p, const struct ct_options *o, bool print,
		  bool sum_from_records, int64_t mono_to_real_ns)
{
	memset(p, 0, sizeof(*p));
	p->out.out = stdout;
	output_buffer(stdout);
	p->out.json = o->json;
	p->out.timestamps = o->timestamps;
	p->out.mono_to_real_ns = mono_to_real_ns;
	p->corr.states = o->states;
	p->corr.emit = emit_record;
	p->corr.ctx = p;
	p->print = print;
	p->top = o->top;
	if (o->summary) {
		p->sum = summary_new();
		if (!p->sum)
			return -ENOMEM;
		p->sum_from_records = sum_from_records;
	}
	if (o->tw_reuse) {
		p->twr = tw_reuse_new(&p->out);
		if (!p->twr)
			return -ENOMEM;
	}
	return 0;
}

void pipeline_record(struct pipeline *p, const struct ct_record *r)
{
	if (p->rec && !p->rec_err)
		p->rec_err = recorder__add(p->rec, r);
	if (p->sum_from_records)
		summary_add(p->sum, r);
	if (p->twr)
		tw_reuse_record(p->twr, r);
	if (p->print)
		correlate_record(&p->corr, r);
	/* after the close is shown: a watched socket's last report follows it */
	if (p->watch)
		watch_record(p->watch, r);
}

void pipeline_finish(struct pipeline *p, const struct ct_stats *stats)
{
	if (p->sum)
		summary_print(p->sum, p->out.out, p->out.json, p->top);
	if (p->twr)
		tw_reuse_print_summary(p->twr);
	if (stats)
		output_stats(&p->out, stats);
}

void pipeline_free(struct pipeline *p)
{
	summary_free(p->sum);
	tw_reuse_free(p->twr);
	watch_free(p->watch);
	p->sum = NULL;
	p->twr = NULL;
	p->watch = NULL;
}
