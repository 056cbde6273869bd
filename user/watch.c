// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include <errno.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "filter.h"
#include "holders.h"
#include "sockdiag.h"
#include "watch.h"

#define COUNT_EVERY_MIN_NS 5000000000ULL

struct watched {
	uint64_t conn_id;	/* 0 for sockets that existed before tracing */
	uint64_t since;		/* CLOCK_MONOTONIC the state began (or tracing began) */
	struct ct_tuple t;
	uint32_t pid;
	char comm[CT_COMM_LEN];
	uint8_t state;
	bool at_least;		/* since is only a lower bound */
	bool reported;		/* crossed the threshold, said so */
	bool seen;		/* still in the map at the last tick */
	bool tw;		/* an orphaned FIN_WAIT2 in a timewait socket (sock_diag) */
	bool due;		/* crossed the threshold this tick: to be reported */
};

struct watch {
	uint64_t threshold, start, next_count;
	explain_emit_fn emit;
	void *ctx;
	struct watched *w;
	size_t n, cap;
	struct watch_tw_layout tw;
	int netns_fd;
	uint32_t netns_ino;
	bool scan_ns;		/* watch_set_netns() was called */
	const struct ct_options *opts; /* the run's filters (-p, --netns, ports, family) */
};

struct watch *watch_new(uint64_t threshold_ns, uint64_t now_ns, explain_emit_fn emit, void *ctx)
{
	struct watch *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->threshold = threshold_ns;
	w->start = now_ns;
	w->next_count = now_ns + (threshold_ns > COUNT_EVERY_MIN_NS ? threshold_ns : COUNT_EVERY_MIN_NS);
	w->emit = emit;
	w->ctx = ctx;
	w->tw.fd = -1;
	w->netns_fd = -1;
	return w;
}

void watch_set_timewait(struct watch *w, const struct watch_tw_layout *l)
{
	w->tw = *l;
}

void watch_set_options(struct watch *w, const struct ct_options *o)
{
	w->opts = o;
}

void watch_set_netns(struct watch *w, int netns_fd, uint32_t netns_ino)
{
	w->netns_fd = netns_fd;
	w->netns_ino = netns_ino;
	w->scan_ns = true;
}

void watch_free(struct watch *w)
{
	if (!w)
		return;
	if (w->netns_fd >= 0)
		close(w->netns_fd);
	free(w->w);
	free(w);
}

static struct watched *add(struct watch *w)
{
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		struct watched *p = realloc(w->w, cap * sizeof(*p));

		if (!p)
			return NULL;
		w->w = p;
		w->cap = cap;
	}
	memset(&w->w[w->n], 0, sizeof(w->w[0]));
	return &w->w[w->n++];
}

static void drop(struct watch *w, size_t i)
{
	w->w[i] = w->w[--w->n];
}

static bool entry_wanted(const struct watch *w, const struct watched *e);

void watch_add_existing(struct watch *w, const struct ct_tuple *t, uint8_t state, uint32_t pid,
			const char *comm)
{
	struct watched *e = add(w);

	if (!e)
		return;
	e->t = *t;
	e->state = state;
	e->since = w->start;
	e->at_least = true;
	e->pid = pid;
	if (comm)
		memcpy(e->comm, comm, strnlen(comm, CT_COMM_LEN));
	if (!entry_wanted(w, e))
		w->n--; /* the one add() gave */
}

int watch_seed(struct watch *w, int netns_fd, uint32_t netns_ino, uint32_t pid)
{
	struct port_report rep;
	struct holder_scan scan = {};
	uint64_t *inodes;
	int n_ino = 0, added = 0;

	if (sockdiag_states((1u << TCP_CLOSE_WAIT) | (1u << TCP_FIN_WAIT2), netns_fd, &rep))
		return 0;
	inodes = calloc(rep.n ? rep.n : 1, sizeof(*inodes));
	if (!inodes) {
		port_report_free(&rep);
		return 0;
	}
	for (int i = 0; i < rep.n; i++)
		if (rep.socks[i].inode)
			inodes[n_ino++] = rep.socks[i].inode;
	if (n_ino)
		holders_find(inodes, n_ino, 4096, 0, &scan);
	for (int i = 0; i < rep.n; i++) {
		const struct port_socket *ps = &rep.socks[i];
		const struct holder *h = NULL;
		struct ct_tuple t = { .netns = netns_ino, .family = ps->family,
				      .lport = ps->lport, .rport = ps->rport };
		int nh = 0;

		/* a FIN_WAIT2 kept in a timewait socket: every tick looks (scan_orphans()) */
		if (port_socket_class(ps) == PORT_TIMEWAIT || !ps->inode)
			continue;
		if (scan.h)
			h = holders_of(&scan, ps->inode, &nh);
		if (pid && (!h || h->pid != pid))
			continue;
		memcpy(t.laddr, ps->laddr, 16);
		memcpy(t.raddr, ps->raddr, 16);
		watch_add_existing(w, &t, ps->state, h ? h->pid : 0, h ? h->comm : NULL);
		added++;
	}
	holder_scan_free(&scan);
	free(inodes);
	port_report_free(&rep);
	return added;
}

static void fill(struct ct_record *r, const struct watched *e, uint8_t kind, uint64_t now)
{
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->ts_ns = now;
	r->conn_id = e->conn_id;
	r->pid = e->pid;
	memcpy(r->comm, e->comm, CT_COMM_LEN);
	r->netns = e->t.netns;
	r->family = e->t.family;
	r->lport = e->t.lport;
	r->rport = e->t.rport;
	memcpy(r->laddr, e->t.laddr, 16);
	memcpy(r->raddr, e->t.raddr, 16);
	r->state = e->state;
	r->age_ns = now - e->since;
	if (e->at_least)
		r->flags |= CT_F_AGE_AT_LEAST;
}

/*
 * The run's filters: the kernel side's table holds every socket it tracks,
 * also other processes' (-p) and other namespaces' (--netns).
 */
static bool entry_wanted(const struct watch *w, const struct watched *e)
{
	struct ct_record r;

	if (!w->opts)
		return true;
	fill(&r, e, CT_REC_WATCH, e->since);
	return record_wanted(w->opts, &r);
}

static struct watched *find_conn(struct watch *w, uint64_t conn_id, size_t *idx)
{
	for (size_t i = 0; i < w->n; i++)
		if (w->w[i].conn_id == conn_id && conn_id && !w->w[i].tw) {
			*idx = i;
			return &w->w[i];
		}
	return NULL;
}

/* a socket seeded at start (watch_add_existing()) with this 4-tuple and state */
static struct watched *find_seeded(struct watch *w, const struct ct_tuple *t, uint8_t state)
{
	for (size_t i = 0; i < w->n; i++) {
		const struct watched *e = &w->w[i];

		if (!e->conn_id && !e->tw && e->state == state && e->t.netns == t->netns &&
		    e->t.family == t->family && e->t.lport == t->lport && e->t.rport == t->rport &&
		    !memcmp(e->t.laddr, t->laddr, 16) && !memcmp(e->t.raddr, t->raddr, 16))
			return &w->w[i];
	}
	return NULL;
}

static void count_per_process(struct watch *w, uint64_t now)
{
	struct ct_record r;

	/* one record per (process, state): how many, and the oldest */
	for (size_t i = 0; i < w->n; i++) {
		struct watched *e = &w->w[i];
		uint32_t count = 0;
		uint64_t oldest = 0;
		bool first = true;

		if (!e->reported)
			continue;
		for (size_t j = 0; j < w->n; j++) {
			struct watched *o = &w->w[j];

			if (!o->reported || o->pid != e->pid || o->state != e->state)
				continue;
			if (j < i) {
				first = false;
				break;
			}
			count++;
			if (now - o->since > oldest)
				oldest = now - o->since;
		}
		if (!first)
			continue;
		fill(&r, e, CT_REC_WATCH_COUNT, now);
		r.conn_id = 0;
		r.refs = count;
		r.age_ns = oldest;
		r.lport = r.rport = 0;
		memset(r.laddr, 0, 16);
		memset(r.raddr, 0, 16);
		w->emit(w->ctx, &r);
	}
}

/* one socket of the kernel side's map, looked at now */
static void consider(struct watch *w, const struct ct_sock *s, uint64_t now)
{
	struct watched *e;
	size_t idx;

	if (!s->conn_id || (s->state != TCP_CLOSE_WAIT && s->state != TCP_FIN_WAIT2) || !s->state_ts ||
	    now < s->state_ts || now - s->state_ts < w->threshold)
		return;
	e = find_conn(w, s->conn_id, &idx);
	if (!e && (e = find_seeded(w, &s->t, s->state))) {
		/*
		 * Seeded from sock_diag after the programs were attached, and
		 * tracked by them too: one socket, known better now.
		 */
		e->conn_id = s->conn_id;
		e->since = s->state_ts;
		e->at_least = false;
		if (s->pid) {
			e->pid = s->pid;
			memcpy(e->comm, s->comm, CT_COMM_LEN);
		}
	} else if (!e) {
		e = add(w);
		if (!e)
			return;
		e->conn_id = s->conn_id;
		e->since = s->state_ts;
		e->t = s->t;
		e->pid = s->pid;
		memcpy(e->comm, s->comm, CT_COMM_LEN);
		e->state = s->state;
		if (!entry_wanted(w, e)) {
			w->n--; /* the one add() gave */
			return;
		}
	}
	e->seen = true;
	if (!e->reported)
		e->due = true;
}

#define BATCH 1024

/*
 * Walk the socks map: batched lookups (Linux 5.6+), a few syscalls for the
 * whole map; else one get_next_key and one lookup per socket.
 */
static void scan_map(struct watch *w, int fd, uint64_t now)
{
	static uint64_t keys[BATCH];
	static struct ct_sock vals[BATCH];
	uint64_t key, next, *prev = NULL, in_batch = 0, out_batch;
	bool first = true;
	__u32 count;
	int err;

	for (;;) {
		count = BATCH;
		err = bpf_map_lookup_batch(fd, first ? NULL : &in_batch, &out_batch, keys, vals,
					   &count, NULL);
		if (err && errno != ENOENT)
			break;
		for (__u32 i = 0; i < count; i++)
			consider(w, &vals[i], now);
		if (err) /* ENOENT: the end */
			return;
		in_batch = out_batch;
		first = false;
	}
	if (!first)
		return; /* failed midway: the rest waits for the next tick */
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (!bpf_map_lookup_elem(fd, &key, &vals[0]))
			consider(w, &vals[0], now);
	}
}

/*
 * Walk the slots in place, as the kernel side writes them: a slot whose
 * conn_id changed while it was copied was taken by another socket.
 */
static void scan_slots(struct watch *w, const struct ct_sock *slots, size_t n, uint64_t now)
{
	struct ct_sock s;

	for (size_t i = 0; i < n; i++) {
		uint64_t id = __atomic_load_n(&slots[i].conn_id, __ATOMIC_ACQUIRE);

		if (!id)
			continue;
		memcpy(&s, &slots[i], sizeof(s));
		if (__atomic_load_n(&slots[i].conn_id, __ATOMIC_ACQUIRE) == id && s.conn_id == id)
			consider(w, &s, now);
	}
}

static bool same_tuple(const struct ct_tuple *a, const struct ct_tuple *b)
{
	return a->netns == b->netns && a->family == b->family && a->lport == b->lport &&
	       a->rport == b->rport && !memcmp(a->laddr, b->laddr, 16) && !memcmp(a->raddr, b->raddr, 16);
}

/* what the kernel side knows of a timewait socket: its owner and when its FIN_WAIT2 began */
static bool tw_known(struct watch *w, uint64_t cookie, struct watched *e)
{
	static uint8_t *val;
	static size_t val_size;
	uint64_t start, fw2 = 0;

	if (w->tw.fd < 0 || !cookie || w->tw.off_start_ns < 0 || w->tw.off_pid < 0 ||
	    w->tw.off_comm < 0)
		return false;
	if (val_size < w->tw.value_size) {
		uint8_t *p = realloc(val, w->tw.value_size);

		if (!p)
			return false;
		val = p;
		val_size = w->tw.value_size;
	}
	if (bpf_map_lookup_elem(w->tw.fd, &cookie, val))
		return false;
	memcpy(&start, val + w->tw.off_start_ns, sizeof(start));
	if (w->tw.off_fw2_ns >= 0)
		memcpy(&fw2, val + w->tw.off_fw2_ns, sizeof(fw2));
	if (w->tw.off_conn_id >= 0)
		memcpy(&e->conn_id, val + w->tw.off_conn_id, sizeof(e->conn_id));
	memcpy(&e->pid, val + w->tw.off_pid, sizeof(e->pid));
	memcpy(e->comm, val + w->tw.off_comm, CT_COMM_LEN);
	/* the FIN_WAIT2 began in the full socket (fw2_ns) before it was parked */
	e->since = start > fw2 ? start - fw2 : start;
	return true;
}

/*
 * Orphaned FIN_WAIT2 sockets: after close(), tcp_time_wait(sk,
 * TCP_FIN_WAIT2, tmo) parks the connection in a timewait socket while it
 * waits for the peer's FIN, and the full socket goes to CLOSE: no longer in
 * the kernel side's socket table.  inet_diag reports a timewait socket
 * under its tw_substate, so a dump for FIN_WAIT2 has them (PORT_TIMEWAIT)
 * beside full FIN_WAIT2 sockets (watched through the table).  Returns
 * false when the dump failed (nothing is known this tick).
 */
static bool scan_orphans(struct watch *w, uint64_t now)
{
	struct port_report rep;

	if (!w->scan_ns || sockdiag_states(1u << TCP_FIN_WAIT2, w->netns_fd, &rep))
		return false;
	for (int i = 0; i < rep.n; i++) {
		const struct port_socket *ps = &rep.socks[i];
		struct ct_tuple t = { .netns = w->netns_ino, .family = ps->family,
				      .lport = ps->lport, .rport = ps->rport };
		struct watched *e = NULL, probe = { 0 };

		if (port_socket_class(ps) != PORT_TIMEWAIT || ps->state != TCP_FIN_WAIT2)
			continue;
		memcpy(t.laddr, ps->laddr, 16);
		memcpy(t.raddr, ps->raddr, 16);
		for (size_t j = 0; j < w->n && !e; j++)
			if (w->w[j].tw && same_tuple(&w->w[j].t, &t))
				e = &w->w[j];
		if (!e) {
			/* older than tracing (or not known): its age is at least the time since */
			if (!tw_known(w, ps->cookie, &probe)) {
				probe.since = w->start;
				probe.at_least = true;
			}
			probe.t = t;
			probe.state = TCP_FIN_WAIT2;
			probe.tw = true;
			if (!entry_wanted(w, &probe))
				continue;
			e = add(w);
			if (!e)
				break;
			*e = probe;
		}
		e->seen = true;
		if (!e->reported && now >= e->since && now - e->since >= w->threshold)
			e->due = true;
	}
	port_report_free(&rep);
	return true;
}

/*
 * Owners the kernel side did not know (an accepted socket without the
 * accept() hooks: --classic-tracepoints, --no-syscalls): who holds the
 * socket now, as ss -p says, for those about to be reported; one sock_diag
 * dump and one bounded /proc scan for all of them.
 */
static void resolve_owners(struct watch *w)
{
	struct port_report rep;
	struct holder_scan scan = { 0 };
	uint64_t *ino;
	int n_ino = 0;
	size_t want = 0;

	for (size_t i = 0; i < w->n; i++)
		want += w->w[i].due && !w->w[i].pid && !w->w[i].tw;
	if (!want || !w->scan_ns ||
	    sockdiag_states((1u << TCP_CLOSE_WAIT) | (1u << TCP_FIN_WAIT2), w->netns_fd, &rep))
		return;
	ino = calloc(w->n, sizeof(*ino));
	for (size_t i = 0; ino && i < w->n; i++) {
		struct watched *e = &w->w[i];

		if (!e->due || e->pid || e->tw)
			continue;
		for (int j = 0; j < rep.n; j++) {
			const struct port_socket *ps = &rep.socks[j];
			struct ct_tuple t = { .netns = w->netns_ino, .family = ps->family,
					      .lport = ps->lport, .rport = ps->rport };

			memcpy(t.laddr, ps->laddr, 16);
			memcpy(t.raddr, ps->raddr, 16);
			if (ps->inode && same_tuple(&t, &e->t)) {
				ino[i] = ps->inode;
				n_ino++;
				break;
			}
		}
	}
	if (n_ino) {
		uint64_t *list = calloc(n_ino, sizeof(*list));
		int k = 0;

		for (size_t i = 0; list && i < w->n; i++)
			if (ino[i])
				list[k++] = ino[i];
		if (list && !holders_find(list, k, 4096, 0, &scan)) {
			for (size_t i = 0; i < w->n; i++) {
				const struct holder *h;
				int nh = 0;

				if (!ino[i] || !(h = holders_of(&scan, ino[i], &nh)))
					continue;
				w->w[i].pid = h->pid;
				memset(w->w[i].comm, 0, CT_COMM_LEN);
				memcpy(w->w[i].comm, h->comm, strnlen(h->comm, CT_COMM_LEN));
			}
			holder_scan_free(&scan);
		}
		free(list);
	}
	free(ino);
	port_report_free(&rep);
}

void watch_tick(struct watch *w, int socks_fd, const struct ct_sock *slots, size_t n, uint64_t now)
{
	struct ct_record r;
	bool scanned;

	for (size_t i = 0; i < w->n; i++)
		w->w[i].seen = w->w[i].at_least && !w->w[i].tw; /* existing ones are not in the map */
	scan_map(w, socks_fd, now);
	if (slots)
		scan_slots(w, slots, n, now);
	scanned = scan_orphans(w, now);
	for (size_t i = 0; i < w->n; i++) {
		struct watched *e = &w->w[i];

		if (e->tw && !scanned)
			e->seen = true; /* not looked at this time */
		if (e->at_least && !e->tw && !e->reported && now - e->since >= w->threshold)
			e->due = true;
	}
	resolve_owners(w);
	for (size_t i = 0; i < w->n; i++) {
		struct watched *e = &w->w[i];

		if (!e->due)
			continue;
		e->due = false;
		e->reported = true;
		fill(&r, e, CT_REC_WATCH, now);
		w->emit(w->ctx, &r);
	}
	/*
	 * Gone from the map without a close record we saw: forget them.  An
	 * orphaned FIN_WAIT2 gone from the dump got the peer's FIN (TIME_WAIT
	 * now) or ended: the connection is over, said if it was reported.
	 */
	for (size_t i = 0; i < w->n;) {
		struct watched *e = &w->w[i];

		if (e->seen) {
			i++;
			continue;
		}
		if (e->tw && e->reported) {
			fill(&r, e, CT_REC_WATCH, now);
			r.flags |= CT_F_WATCH_CLOSED;
			w->emit(w->ctx, &r);
		}
		drop(w, i);
	}
	if (now >= w->next_count) {
		count_per_process(w, now);
		w->next_count = now + (w->threshold > COUNT_EVERY_MIN_NS ? w->threshold : COUNT_EVERY_MIN_NS);
	}
}

static bool same_conn(const struct watched *e, const struct ct_record *r)
{
	return e->t.netns == r->netns && e->t.lport == r->lport && e->t.rport == r->rport &&
	       !memcmp(e->t.laddr, r->laddr, 16) && !memcmp(e->t.raddr, r->raddr, 16);
}

void watch_record(struct watch *w, const struct ct_record *r)
{
	struct ct_record out;

	if (r->kind != CT_REC_CLOSE && r->kind != CT_REC_TIMEWAIT)
		return;
	for (size_t i = 0; i < w->n; i++) {
		struct watched *e = &w->w[i];

		/* an orphaned FIN_WAIT2 ends with its timewait socket */
		if (e->tw != (r->kind == CT_REC_TIMEWAIT))
			continue;
		if (e->conn_id && !e->tw ? e->conn_id != r->conn_id : !same_conn(e, r))
			continue;
		if (e->reported) {
			fill(&out, e, CT_REC_WATCH, r->ts_ns);
			out.flags |= CT_F_WATCH_CLOSED;
			w->emit(w->ctx, &out);
		}
		drop(w, i);
		return;
	}
}
