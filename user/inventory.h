/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Sockets older than the tracer: at start, closing sockets are listed
 * (sock_diag) in the namespaces traced, and the timewait ones are handed to
 * the kernel side (map tw_seeds) so that their ends are reported.
 */
#ifndef CT_INVENTORY_H
#define CT_INVENTORY_H

#include <stdbool.h>
#include <stdint.h>
#include "options.h"

/* at most this many namespaces are looked at */
#define INVENTORY_MAX_NETNS 4096

struct inventory {
	int netns;		/* namespaces listed */
	int netns_failed;	/* found, but sock_diag refused or failed */
	int timewait;		/* timewait sockets in TIME_WAIT proper */
	int tw_fin_wait2;	/* timewait sockets in substate FIN_WAIT2 (orphans) */
	int close_wait, fin_wait2, last_ack; /* full sockets */
	int seeded;		/* timewait sockets handed to the kernel side */
	int not_followed;	/* timewait sockets not followed (seed map full, or -p) */
	int dropped;		/* beyond SOCKDIAG_MAX_SOCKETS in a namespace: not even listed */
	uint32_t max_expires_ms; /* the most time left on a seeded socket's timer */
	int netns_later;	/* listed after "Tracing": the time budget ran out */
	uint64_t ms;		/* how long the inventory took */
	struct inventory_state *st; /* between inventory_take() and inventory_finish() */
};

/*
 * Take the inventory after the programs are attached (nothing is missed in
 * between: a socket is then seen by both, and the kernel side keeps the
 * entry it made itself).  seeds_fd/tws_fd: the maps tw_seeds and tws,
 * tws_value_size the size of a tws value (looked up only to test for a key).
 * cookie_ids: connection ids are socket cookies (use_cookies).  seeds_left:
 * the kernel side's count of seeds not adopted yet (tw_seeds_left, in the
 * mapped .bss), raised before each seed goes in.  attached_ns: when the
 * programs were attached (CLOCK_MONOTONIC).  Namespaces are listed for
 * budget_ms at most (each costs a walk of the kernel's whole established
 * hash table, tens of milliseconds); returns 1 when some are left for
 * inventory_finish(), which lists them (and must be called in any case).
 */
int inventory_take(const struct ct_options *o, int seeds_fd, int tws_fd, uint32_t tws_value_size,
		   bool cookie_ids, uint64_t *seeds_left, uint64_t attached_ns, uint64_t budget_ms,
		   struct inventory *inv);
void inventory_finish(struct inventory *inv);

/*
 * Seeds still there once every seeded socket must have ended (its timer,
 * plus a TIME_WAIT after a FIN_WAIT2): sockets that ended between the
 * listing and their seed, unreported.  Deletes them; returns how many.
 */
int inventory_sweep(int seeds_fd, uint64_t *seeds_left);

/* the start-up line on stderr: what was found and what will be followed */
void inventory_print(const struct inventory *inv);

#endif
