// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer target for the recording reader: any bytes must give records,
 * a clean end, "truncated" or "corrupt" -- never a crash or a leak.
 * Build and run: make fuzz (FUZZ_SECONDS=60).
 */
#include <stddef.h>
#include <stdint.h>
#include "trace_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct trace_reader *rd;
	struct ct_record rec;
	char err[256];
	int n = 0;

	rd = trace_reader__open_mem(data, size, err, sizeof(err));
	if (!rd)
		return 0;
	for (;;) {
		enum reader_status st = trace_reader__next(rd, &rec);

		if (st == READ_OK) {
			n += rec.kind; /* touch the record */
			continue;
		}
		if (st != READ_STATS && st != READ_ROTATED)
			break;
	}
	trace_reader__close(rd);
	return n < 0;
}
