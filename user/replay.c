// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "filter.h"
#include "pipeline.h"
#include "replay.h"
#include "trace_file.h"

int replay_run(const struct ct_options *o)
{
	const struct ct_file_header *h;
	struct trace_reader *rd;
	struct pipeline p;
	struct ct_record rec;
	bool have_stats = false, closed = false, done = false;
	uint64_t next_interval = 0;
	char err[256];
	int rc = 0;

	rd = trace_reader__open(o->read_path, err, sizeof(err));
	if (!rd) {
		fprintf(stderr, "closetrace: %s: %s\n", o->read_path, err);
		return 1;
	}
	h = trace_reader__header(rd);
	if (pipeline_init(&p, o, !o->summary && !o->tw_reuse, true, h->mono_to_real_ns)) {
		fprintf(stderr, "closetrace: out of memory\n");
		trace_reader__close(rd);
		return 1;
	}
	if (p.print)
		output_header(&p.out);

	while (!done) {
		switch (trace_reader__next(rd, &rec)) {
		case READ_OK:
			if (!record_wanted(o, &rec))
				break;
			/* -i on a replay: intervals of the recording's own clock */
			if (o->interval) {
				uint64_t step = (uint64_t)(o->interval * 1e9);

				if (!next_interval)
					next_interval = rec.ts_ns + step;
				while (rec.ts_ns >= next_interval) {
					summary_print(p.sum, p.out.out, p.out.json, p.top);
					next_interval += step;
				}
			}
			pipeline_record(&p, &rec);
			break;
		case READ_STATS:
			have_stats = closed = true;
			break;
		case READ_ROTATED:
			closed = true;
			break;
		case READ_EOF:
			/* a recorder that stops cleanly ends with its stats block */
			if (!closed)
				fprintf(stderr,
					"closetrace: %s: truncated after %llu records (no closing block: the recorder did not stop cleanly); everything before was replayed\n",
					o->read_path, (unsigned long long)trace_reader__records(rd));
			done = true;
			break;
		case READ_TRUNCATED:
			fprintf(stderr,
				"closetrace: %s: truncated after %llu records (a recorder that did not stop cleanly); everything before was replayed\n",
				o->read_path, (unsigned long long)trace_reader__records(rd));
			done = true;
			break;
		case READ_CORRUPT:
			fprintf(stderr, "closetrace: %s: corrupt block at byte %llu (after %llu records)\n",
				o->read_path, (unsigned long long)trace_reader__offset(rd),
				(unsigned long long)trace_reader__records(rd));
			rc = 1;
			done = true;
			break;
		case READ_IO_ERROR:
			fprintf(stderr, "closetrace: %s: read error: %s\n", o->read_path, strerror(errno));
			rc = 1;
			done = true;
			break;
		}
	}
	if (!rc)
		pipeline_finish(&p, have_stats ? trace_reader__stats(rd) : NULL);
	if (fflush(stdout) || ferror(stdout)) {
		fprintf(stderr, "closetrace: write error on output: %s\n", strerror(errno));
		rc = 1;
	}
	pipeline_free(&p);
	trace_reader__close(rd);
	return rc;
}
