/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Command-line options. */
#ifndef CT_OPTIONS_H
#define CT_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include "closetrace.h"

#define DEFAULT_MAX_SOCKETS 65536

struct ct_options {
	uint32_t pid;	  /* -p: only this process's connections */
	uint32_t netns;	  /* --netns: only this network namespace (inode) */
	int family;	  /* 0, 4 (-4) or 6 (-6) */
	uint16_t lports[CT_MAX_PORTS];
	uint16_t rports[CT_MAX_PORTS];
	int n_lports, n_rports;
	double duration;  /* -d seconds, 0 = until interrupted */
	bool json;	  /* --json */
	bool states;	  /* --states */
	bool timestamps;  /* -T */
	bool verbose;	  /* -v */
	bool classic_tp;  /* --classic-tracepoints */
	bool old_kernel;  /* --old-kernel */
	const char *write_path;	 /* -w: record to this file ("-" = stdout) */
	const char *read_path;	 /* -r: replay this recording */
	bool print;		 /* --print: with -w, also print */
	uint64_t rotate_size;	 /* --rotate */
	unsigned int rotate_count; /* --rotate-count */
	unsigned int file_mode;	 /* --file-mode, default 0600 */
	bool summary;		 /* --summary */
	double interval;	 /* -i: summary every this many seconds */
	int top;		 /* --top: rows in the summary's top tables */
	bool tw_reuse;		 /* --tw-reuse */
	bool no_syscalls;	 /* --no-syscalls: no close-deferred / bind-conflict */
	double watch;		 /* --watch: report CLOSE_WAIT / FIN_WAIT2 older than this */
	uint32_t max_timewait;	 /* --max-timewait: TIME_WAIT sockets tracked at once */
	uint32_t max_sockets;  /* --max-sockets, 0: DEFAULT_MAX_SOCKETS */
	int argc;		 /* the command line, for the recording's header */
	char **argv;
};

/*
 * Parse argv into opts.  Returns 0 on success, 1 when the program should
 * exit successfully (--help, --version), or -1 after printing a one-line
 * error to stderr.
 */
int options_parse(int argc, char **argv, struct ct_options *opts);

/* Parse "100M", "1G", "4096" into bytes; -1 on error. */
int64_t parse_size(const char *s);

/* Parse "80,443,8000" into ports[]; returns the count or -1 (with msg). */
int parse_port_list(const char *s, uint16_t *ports, int max, char *err, size_t errlen);

#endif
