/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Which processes hold given socket inodes open: a bounded scan of /proc/PID/fd. */
#ifndef CT_HOLDERS_H
#define CT_HOLDERS_H

#include <stdbool.h>
#include <stdint.h>

#define HOLDERS_DEFAULT_BUDGET_MS 200
#define HOLDERS_MAX_FDS 1000000

struct holder {
	uint64_t inode;
	uint32_t pid;		/* thread group id */
	int fd;
	char comm[16];		/* as /proc/PID/comm has it: any byte but NUL and newline */
};

struct holder_scan {
	int n;
	struct holder *h;	/* malloc'd, sorted by inode, pid, fd */
	bool gave_up;		/* stopped before the end: holders may be missing */
	const char *why;	/* when gave_up: "time budget", "fd limit" or "result limit" */
	uint64_t fds_read;	/* fd links read */
	uint32_t procs;		/* processes whose fd table was listed */
	unsigned int elapsed_ms;
};

/*
 * Processes holding any of inodes (socket inodes, in any order, repeats
 * allowed).  Stops after budget_ms (0: HOLDERS_DEFAULT_BUDGET_MS),
 * HOLDERS_MAX_FDS fd links or max_results holders and sets gave_up.
 * Processes and fds that go away meanwhile, or that we may not read, are
 * skipped.  Returns 0 or -errno (only when /proc cannot be listed or memory
 * runs out); free out with holder_scan_free().
 */
int holders_find(const uint64_t *inodes, int n_inodes, int max_results, unsigned int budget_ms,
		 struct holder_scan *out);

/* the same with a limit on fd links read instead of HOLDERS_MAX_FDS */
int holders_find_limited(const uint64_t *inodes, int n_inodes, int max_results,
			 unsigned int budget_ms, uint64_t max_fds, struct holder_scan *out);

/* the holders of inode in a finished scan: first one, *count of them; NULL if none */
const struct holder *holders_of(const struct holder_scan *s, uint64_t inode, int *count);

void holder_scan_free(struct holder_scan *s);

#endif
