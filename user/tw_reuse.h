/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * --tw-reuse: check every TIME_WAIT reuse against the rules the kernel says
 * it applies (tcp_twsk_unique()), with the sysctls in force at the reuse.
 */
#ifndef CT_TW_REUSE_H
#define CT_TW_REUSE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "closetrace.h"
#include "output.h"

enum reuse_verdict {
	REUSE_OK = 0,
	REUSE_VIOLATION,
};

/* verdict for a timewait record with end "reused"; why explains it */
enum reuse_verdict tw_reuse_verdict(const struct ct_record *r, char *why, size_t len);
/* the loopback test of tcp_twsk_unique() for tcp_tw_reuse=2 */
bool tw_is_loopback(const struct ct_record *r);

struct tw_reuse;

struct tw_reuse *tw_reuse_new(const struct ct_output *out);
void tw_reuse_free(struct tw_reuse *t);
/* feed every record; prints reuse and connect-failure events as they come */
void tw_reuse_record(struct tw_reuse *t, const struct ct_record *r);
void tw_reuse_print_summary(const struct tw_reuse *t);

#endif
