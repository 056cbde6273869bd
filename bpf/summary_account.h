/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * --summary accounting, compiled into both sides: the BPF programs apply it
 * to every record they produce (in kernel maps), the replay of a recording
 * applies it to every record read back.  One definition, so both agree.
 */
#ifndef CLOSETRACE_SUMMARY_ACCOUNT_H
#define CLOSETRACE_SUMMARY_ACCOUNT_H

#include "closetrace.h"

#ifndef CT_INLINE
#define CT_INLINE static inline __attribute__((always_inline))
#endif

/* TCP_FIN_WAIT2 etc. as the kernel numbers them (include/net/tcp_states.h) */
#define CT_TCP_FIN_WAIT2 5
#define CT_TCP_CLOSE 7
#define CT_TCP_LISTEN 10

/*
 * floor(log2(v)), 0 for 0 and 1, capped to the last slot.  Without
 * branches: the verifier walks every branch of a log2 by halving (64 paths
 * for each of the 16 states of a close record), which made loading a
 * second or more per program under emulation.
 */
CT_INLINE __u32 ct_hist_slot(__u64 v)
{
	__u32 r;

	v |= 1;
	v |= v >> 1;
	v |= v >> 2;
	v |= v >> 4;
	v |= v >> 8;
	v |= v >> 16;
	v |= v >> 32;
	/* v is now 2^(floor(log2 v) + 1) - 1: count its bits */
	v -= (v >> 1) & 0x5555555555555555ULL;
	v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
	v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	r = (__u32)((v * 0x0101010101010101ULL) >> 56) - 1;
	return r < CT_HIST_SLOTS ? r : CT_HIST_SLOTS - 1;
}

/* The summary of one record.  s is per CPU in the kernel: plain adds. */
CT_INLINE void ct_summary_account(struct ct_summary *s, const struct ct_record *r)
{
	if (r->kind == CT_REC_CLOSE) {
		s->closes++;
		if (r->initiator < CT_INIT__MAX)
			s->by_initiator[r->initiator]++;
		if (r->method < CT_M__MAX)
			s->by_method[r->method]++;
		if (r->flags & CT_F_TIMEWAIT)
			s->tw_created++;
		if (r->flags & CT_F_TW_NOT_CREATED)
			s->tw_not_created++;
		if (r->flags & CT_F_RST_SENT)
			s->rst_sent++;
		if (r->flags & CT_F_RST_RECEIVED)
			s->rst_received++;
		for (int i = 1; i < CT_NSTATES; i++) {
			if (!(r->visited & (1u << i)) || i == CT_TCP_CLOSE || i == CT_TCP_LISTEN)
				continue;
			s->state_hist[i][ct_hist_slot(r->state_ns[i])]++;
		}
	} else if (r->kind == CT_REC_TIMEWAIT) {
		if (r->tw_end < CT_TW__MAX)
			s->tw_end[r->tw_end]++;
		s->tw_hist[ct_hist_slot(r->tw_ns)]++;
		if (r->tw_end == CT_TW_REUSED)
			s->reuse_age_hist[ct_hist_slot(r->tw_sock_ns)]++;
	} else if (r->kind == CT_REC_CLOSE_DEFERRED) {
		s->close_deferred++;
	} else if (r->kind == CT_REC_BIND_CONFLICT) {
		s->bind_conflicts++;
	}
}

/*
 * The per-owner and per-endpoint counts of one close record.  Shared
 * between CPUs in the kernel: atomic adds.
 */
CT_INLINE void ct_counts_account(struct ct_counts *c, const struct ct_record *r)
{
	__sync_fetch_and_add(&c->closes, 1);
	if (r->initiator == CT_INIT_LOCAL || r->initiator == CT_INIT_SIMULTANEOUS)
		__sync_fetch_and_add(&c->local, 1);
	else if (r->initiator == CT_INIT_REMOTE)
		__sync_fetch_and_add(&c->remote, 1);
	if (r->flags & (CT_F_RST_SENT | CT_F_RST_RECEIVED))
		__sync_fetch_and_add(&c->resets, 1);
	if (r->flags & CT_F_TIMEWAIT)
		__sync_fetch_and_add(&c->tw_created, 1);
}

/*
 * A remote endpoint: address and port, but only the address for accepted
 * connections, whose remote port is the client's ephemeral one (counting
 * by it would give every connection its own line).
 */
CT_INLINE void ct_endpoint_of(struct ct_endpoint *e, const struct ct_record *r)
{
	e->family = r->family;
	e->port = r->flags & CT_F_PASSIVE ? 0 : r->rport;
	for (int i = 0; i < 16; i++)
		e->addr[i] = r->raddr[i];
}

#endif /* CLOSETRACE_SUMMARY_ACCOUNT_H */
