/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* "Address already in use": what holds a TCP port right now, and who owns it. */
#ifndef CT_WHY_BUSY_H
#define CT_WHY_BUSY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "holders.h"
#include "sockdiag.h"

#define WHY_BUSY_MAX_LIST 64	   /* sockets listed per kind (listen, established, other) */
#define WHY_BUSY_MAX_OWNERS 8	   /* owners shown per socket */
#define WHY_BUSY_MAX_HOLDERS 4096  /* owners collected in all */

enum why_busy_verdict {
	WHY_FREE,		/* no TCP socket uses the port */
	WHY_LISTEN,		/* a listening socket holds it */
	WHY_BOUND,		/* a bound-only socket holds it, no listener */
	WHY_CONNECTIONS,	/* connections (or orphans) use it, no listener */
	WHY_TIMEWAIT,		/* only timewait sockets remain */
};

struct why_busy {
	struct port_report rep;
	struct holder_scan scan;
	int scan_err;		/* -errno when the owner scan could not run, else 0 */
	enum why_busy_verdict verdict;
};

/*
 * Asks the kernel which TCP sockets use port (in the network namespace of
 * netns_fd, an open /proc/PID/ns/net, or the caller's when negative) and
 * scans /proc for the owners of those with a file, within budget_ms
 * (0: HOLDERS_DEFAULT_BUDGET_MS).  0 or -errno (from sock_diag only: a
 * failed owner scan is reported in scan_err).  Free with why_busy_free().
 */
int why_busy_collect(uint16_t port, int netns_fd, unsigned int budget_ms, struct why_busy *wb);
void why_busy_free(struct why_busy *wb);

/* summary line, what it means, one line per socket */
void why_busy_write_text(const struct why_busy *wb, FILE *f);

/*
 * One JSON object, no newline.  lead_fields, when not NULL, replaces the
 * leading "event":"why_busy" verbatim (e.g. "\"event\":\"bind_conflict\",\"pid\":12"),
 * so a tracer event can carry the same object.
 */
void why_busy_write_json(const struct why_busy *wb, const char *lead_fields, FILE *f);

/* collect in the caller's namespace and write text or a JSON line; 0 or -errno (nothing written) */
int why_busy_print(uint16_t port, bool json, FILE *f);

const char *why_busy_verdict_name(enum why_busy_verdict v);

#endif
