/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Correlation of records into what the user sees: records the kernel side
 * leaves implicit are made explicit here, so live runs and (later) replays
 * of recorded traces print the same.
 */
#ifndef CT_CORRELATE_H
#define CT_CORRELATE_H

#include <stdbool.h>
#include "closetrace.h"

typedef void (*ct_emit_fn)(void *ctx, const struct ct_record *r);

struct correlator {
	bool states;	/* --states: synthesize the TIME_WAIT -> CLOSE transition */
	ct_emit_fn emit;
	void *ctx;
};

void correlate_record(const struct correlator *c, const struct ct_record *r);

#endif
