/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * --watch: sockets left in CLOSE_WAIT (the application has not closed
 * after the peer did: a leak when it lasts) or FIN_WAIT2 (waiting on a peer
 * that never closes) for longer than a threshold.  Reported once when they
 * cross it and once when they finally close, with a periodic count per
 * process.  Reports are records (CT_REC_WATCH, CT_REC_WATCH_COUNT).
 */
#ifndef CT_WATCH_H
#define CT_WATCH_H

#include <stddef.h>
#include <stdint.h>
#include "closetrace.h"
#include "explain.h"

struct watch;
struct ct_options;

struct watch *watch_new(uint64_t threshold_ns, uint64_t now_ns, explain_emit_fn emit, void *ctx);
void watch_free(struct watch *w);

/*
 * Sockets already waiting when tracing began (from sock_diag): their age
 * is only known to be at least the time since then.
 */
void watch_add_existing(struct watch *w, const struct ct_tuple *t, uint8_t state, uint32_t pid,
			const char *comm);

/*
 * Seed from sock_diag: the CLOSE_WAIT and FIN_WAIT2 sockets of the
 * namespace behind netns_fd (inode netns_ino), owners from /proc; only
 * those of pid when pid is not 0.  Returns how many were added.
 */
int watch_seed(struct watch *w, int netns_fd, uint32_t netns_ino, uint32_t pid);

/*
 * Where the kernel side keeps timewait sockets (the tws map, keyed by
 * cookie) and where the fields of its values are (from the BPF object's
 * BTF, so that the layout stays the kernel side's own): the owner and
 * start of an orphaned FIN_WAIT2 parked in a timewait socket.  Offsets
 * are -1 when unknown; fd -1 when there is no such map.
 */
struct watch_tw_layout {
	int fd;
	size_t value_size;
	int off_conn_id, off_start_ns, off_fw2_ns, off_pid, off_comm;
};

void watch_set_timewait(struct watch *w, const struct watch_tw_layout *l);

/* only sockets that the run's filters let through (-p, --netns, ports, family) */
void watch_set_options(struct watch *w, const struct ct_options *o);

/*
 * The namespace to look for orphaned FIN_WAIT2 sockets (sock_diag:
 * timewait sockets in substate FIN_WAIT2) and unknown owners in, every
 * tick: netns_fd (the watch closes it; negative: our own) and its inode.
 */
void watch_set_netns(struct watch *w, int netns_fd, uint32_t netns_ino);

/*
 * Look at the kernel side's sockets now: the socks map (fd) and the
 * sock_slots array, mapped read-only (n slots, none if NULL); call about
 * once a second.
 */
void watch_tick(struct watch *w, int socks_fd, const struct ct_sock *slots, size_t n,
		uint64_t now_ns);

/* every record goes past: a close of a watched socket ends its watch */
void watch_record(struct watch *w, const struct ct_record *r);

#endif
