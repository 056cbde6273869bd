/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Rendering records: the live table and JSON lines. */
#ifndef CT_OUTPUT_H
#define CT_OUTPUT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "closetrace.h"

struct ct_output {
	FILE *out;
	bool json;
	bool timestamps;
	int64_t mono_to_real_ns; /* add to a record's ts_ns for wall-clock time */
	/* a live run's start-up, copied into its struct ct_stats at the end */
	int64_t start_ms;	/* from the start of the process to "Tracing" */
	int preexisting;	/* closing sockets older than the tracer, found at start */
	int preexisting_lost;	/* of those, timewait sockets not followed */
};

/* the tracer's counters at exit; also the stats block of a recording (doc/trace-format.md) */
struct ct_stats {
	uint64_t lost;
	uint64_t socks_full;
	uint64_t tw_full;
	uint64_t records;
	/* absent in recordings made before December 2026 (read as 0) */
	uint64_t missed;       /* program runs the kernel skipped (recursion_misses) */
	uint64_t startup_ms;   /* from the start of the process to "Tracing": closes before it not seen */
	uint64_t preexisting;  /* closing sockets older than the tracer, found at start */
	uint64_t preexisting_untracked; /* of those, timewait sockets not followed */
};

/* the stats block of recordings made before missed was added */
#define CT_STATS_V1_SIZE (4 * sizeof(uint64_t))

const char *state_name(int state);
const char *initiator_name(int initiator);
const char *tw_end_name(int end);
const char *method_name(int method);
/* a JSON string of at most max bytes of s, escaped */
void json_string(FILE *f, const char *s, size_t max);

/* "127.0.0.1", "::1", "::ffff:10.0.0.1" */
void format_addr(uint16_t family, const uint8_t *addr, char *buf, size_t len);
/* "812ns", "41.2us", "1.20ms", "60.84s" */
void format_duration(uint64_t ns, char *buf, size_t len);

/* give f (stdout) a large buffer unless it is a terminal; call before writing to it */
void output_buffer(FILE *f);
void output_header(const struct ct_output *o);
void output_record(const struct ct_output *o, const struct ct_record *r);
void output_stats(const struct ct_output *o, const struct ct_stats *s);

#endif
