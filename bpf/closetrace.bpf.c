// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * closetrace: the kernel side.
 *
 * Per-socket state lives in the socks map (keyed by struct sock address,
 * deleted when the socket is destroyed).  One record goes to the ring buffer
 * when a connection's close completes, one when its TIME_WAIT ends.
 *
 * TIME_WAIT is not visible to inet_sock_set_state: tcp_time_wait() moves the
 * connection into a separate struct inet_timewait_sock and the full socket
 * goes to CLOSE.  The timewait socket is seen through its timer
 * (tw->tw_timer, function tw_timer_handler): timer_start when it is
 * scheduled, timer_expire_entry when it runs out, timer_cancel when it is
 * killed early (inet_twsk_deschedule_put()).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "closetrace.h"
#include "compat.bpf.h"
#define CT_INLINE static __always_inline
#include "summary_account.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define ETIMEDOUT 110
#define ECONNRESET 104
#define TCP_TIMEWAIT_LEN_S 60 /* include/net/tcp.h: TCP_TIMEWAIT_LEN (60*HZ) */
#define SOCK_BINDPORT_LOCK 8  /* include/net/sock.h */
#define PF_EXITING 0x4	      /* include/linux/sched.h */
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EADDRINUSE 98

/* configuration, set by the loader before load */
const volatile __u32 filter_pid = 0;
const volatile __u32 filter_netns = 0;
const volatile __u8 filter_family = 0; /* 0, 4 or 6 */
const volatile __u8 emit_states = 0;
const volatile __u8 emit_records = 1;	   /* per-connection records to the ring buffer */
const volatile __u8 aggregate = 0;	   /* --summary: account every record in maps */
const volatile __u8 track_connect_fail = 0; /* --tw-reuse: report EADDRNOTAVAIL connects */
const volatile __u8 watch_tuples = 0;	   /* --watch: keep the 4-tuple of waiting sockets */
const volatile __u16 filter_lports[CT_MAX_PORTS] = {};
const volatile __u16 filter_rports[CT_MAX_PORTS] = {};
const volatile __u32 n_lports = 0;
const volatile __u32 n_rports = 0;
/* set after the load: the loader reads /proc/kallsyms while the verifier runs */
__u64 tw_timer_fn = 0;		/* address of tw_timer_handler */
__u64 reqsk_timer_fn = 0;	/* address of reqsk_timer_handler */
const volatile __u64 wakeup_bytes = 0;	/* batch ring buffer wake-ups up to this much data */
const volatile __u32 hz = 250;		/* CONFIG_HZ, for jiffies */
const volatile __u32 n_slots = 65536; /* sock_slots entries, a power of two */
/* this architecture's syscall numbers, from the loader's <sys/syscall.h> */
const volatile long nr_close = -1;
const volatile long nr_bind = -1;
const volatile long nr_listen = -1;
const volatile long nr_connect = -1;
const volatile long nr_accept = -1;
const volatile long nr_accept4 = -1;

/* counters read by the loader; enum ct_stat */
__u64 stats[CT_STAT__MAX] = {};
/* entries in socks while use_cookies (see sock_state) */
__u64 socks_spilled = 0;
/* tws entries keyed by address, not cookie (see tw_state) */
__u64 tw_by_address = 0;
/* cancels of timewait timers not yet classified (see pending_cancel) */
__u32 pending_cancels = 0;
/* events a twin handled because the kernel skipped its first (see busy) */
__u64 nested_runs = 0;
/* close records waiting in rst_wait for the RST of an abort on data */
__u32 rst_waits = 0;
/* entries in tw_seeds not adopted yet (see tw_adopt); set by the loader */
__u64 tw_seeds_left = 0;

struct tw_info {
	__u64 tw;	/* the timewait socket's address */
	__u64 conn_id;
	__u64 start_ns; /* timewait socket scheduled */
	__u64 start_j;	/* the same, in jiffies */
	__u64 fin_ns;	/* the peer's FIN reached a FIN_WAIT2 timewait socket */
	__u64 fw2_ns;	/* FIN_WAIT2 time spent in the full socket */
	__u32 pid;
	__u32 flags;
	__u8 initiator;
	__u8 claimed; /* joined to the full socket it came from */
	__u8 method;
	char comm[CT_COMM_LEN];
};

/* what a timewait record says of its timewait socket, read while it is alive */
struct tw_facts {
	__u64 expires;	   /* tw_timer.expires, jiffies */
	__u32 bound_dev_if;
	__u8 substate;
	__u8 pad[3];
};

/* a timewait timer cancel whose cause is not known yet */
struct pending_cancel {
	__u64 tw;
	__u64 key; /* its key in tws */
	__u64 ts;  /* when: the end of the TIME_WAIT if it was a kill */
	__u8 due;  /* past its expiry: probably expire_timers() (see settle_pending) */
	__u8 pad[7];
	struct tw_facts f; /* a killed timewait socket is freed before it is settled */
	struct ct_tuple t;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} rb SEC(".maps");

/*
 * Per-socket state where use_cookies: slot cookie % n_slots of an
 * array, taken by writing the socket's cookie into conn_id (0: free).
 * Cookies are handed out in sequence (gen_cookie_next()), so the sockets
 * alive at once mostly fall in different slots; a socket whose slot is
 * taken goes to socks.  Taking and finding a slot is one array access,
 * where a hash table costs a hash, a bucket lock and two cache misses.
 * Sized by the loader (--max-sockets, a power of two).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_MMAPABLE); /* --watch reads it in place */
	__type(key, __u32);
	__type(value, struct ct_sock);
} sock_slots SEC(".maps");

/*
 * Per-socket state: the sockets whose slot was taken (use_cookies, keyed by
 * cookie, allocated on demand on 6.1+) or all of them (keyed by address,
 * preallocated: every connection inserts and deletes an entry, and a
 * preallocated element comes from a per-CPU free list, not the BPF memory
 * allocator and RCU).  Sized by the loader (--max-sockets).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct ct_sock);
} socks SEC(".maps");

/*
 * Timewait sockets, keyed by tw_cookie (the cookie of the full socket they
 * replace, which inet_twsk_alloc() copies) or, without one, by address;
 * sized by the loader from tcp_max_tw_buckets.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct tw_info);
} tws SEC(".maps");

/*
 * Timewait sockets older than the tracer, keyed by cookie, until their
 * first timer event (tw_adopt()); filled by the loader, sized with tws.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct ct_tw_seed);
} tw_seeds SEC(".maps");

/* classic tracepoints: timewait sockets just scheduled, by 4-tuple, until their full socket's CLOSE */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU); /* per-CPU LRU lists: no shared lock */
	__uint(max_entries, 16384);
	__type(key, struct ct_tuple);
	__type(value, __u64);
} tw_birth SEC(".maps");

/* the socket each thread is connect()ing, to recognise TIME_WAIT reuse */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU); /* per-CPU LRU lists: no shared lock */
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} connecting SEC(".maps");

/* the same, in task local storage (BTF tracepoints, Linux 5.11+) */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} task_connecting SEC(".maps");

/* owner of each listening port: accepted children inherit it */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ct_listener_key);
	__type(value, struct ct_owner);
} listeners SEC(".maps");

/* socket inodes of the -p process at start-up (filled by the loader) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u32);
} target_inodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pending_cancel);
} pending SEC(".maps");

/* an orphan's close, destroyed, waiting for its RST (rst_wait_settle()) */
struct rst_wait {
	__u64 sk;
	struct ct_tuple t;
	struct ct_sock si;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rst_wait);
} rst_wait SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} id_counter SEC(".maps");

/*
 * A timewait socket born keyed by address because an older one of the same
 * full socket holds their cookie (a socket reconnected after its close),
 * for its CLOSE that follows on this CPU: { cookie, key }.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64[2]);
} tw_collided SEC(".maps");

/*
 * The last timewait socket that found tws full on this CPU, for the CLOSE
 * of its full socket that follows (tcp_time_wait() -> tcp_done()): that
 * close made a TIME_WAIT whose end will not be reported.
 */
struct tw_unkept {
	__u64 cookie;
	struct ct_tuple t;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tw_unkept);
} tw_unkept SEC(".maps");

/* --summary aggregates (bpf/summary_account.h) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ct_summary);
} summary SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct ct_counts);
} proc_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ct_endpoint);
	__type(value, struct ct_counts);
} endpoint_counts SEC(".maps");

/* where a record is built when it does not go to the ring buffer */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2); /* [1]: a nested run (see busy) */
	__type(key, __u32);
	__type(value, struct ct_record);
} scratch SEC(".maps");

/*
 * Per CPU: which of our programs runs now.  __bpf_trace_run() does not run
 * a program on a CPU where it is already running (prog->active): a softirq
 * that interrupts handle_set_state_* or handle_destroy_* and moves another
 * socket would go unseen (counted in recursion_misses, reported as
 * missed_events); so would a timewait timer's event inside a timer program
 * (those run for every timer).  Each has a twin, attached to the same tracepoint, that
 * does the work only then (BUSY_* set: the kernel skipped the first).
 */
#define BUSY_SET_STATE 1
#define BUSY_DESTROY 2
#define BUSY_NESTED 4 /* a nested run: it uses scratch[1] */
#define BUSY_TIMER_START 32
#define BUSY_TIMER_EXPIRE 64
#define BUSY_TIMER_CANCEL 128
#define BUSY_DONE(what) ((what) << 3) /* the nested run was not skipped: the twin has nothing to do */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} busy SEC(".maps");

static __always_inline __u32 *busy_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&busy, &zero);
}

/* scratch's slot for this run: 1 in a twin, whose run interrupted the other's */
static __always_inline __u32 scratch_key(void)
{
	__u32 *b = busy_get();

	return b && (*b & BUSY_NESTED) ? 1 : 0;
}

static __always_inline void stat_inc(int i)
{
	__sync_fetch_and_add(&stats[i], 1);
}

/*
 * Per-socket state: in a slot by cookie (use_cookies), else in socks by
 * address.  (Socket local storage was measured slower here: two
 * allocations per socket.)  The cookie is the one sock_first_seen() had
 * the kernel give every tracked socket; 0 means never tracked.
 */
static __always_inline __u64 sock_key(struct sock *sk, int direct)
{
	if (!use_cookies)
		return (__u64)sk;
	if (direct)
		return sk->__sk_common.skc_cookie.counter;
	return BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
}

/*
 * gen_cookie_next() hands each CPU a block of 4096 cookies in turn: a
 * block's cookies go to consecutive slots, from a start that the block
 * number scatters (else blocks 16 apart would share slots, and with fewer
 * than 4096 slots the CPUs would walk the same ones).
 */
static __always_inline struct ct_sock *sock_slot(__u64 cookie)
{
	__u32 idx = (cookie + (__u32)(cookie >> 12) * 2654435761u) & (n_slots - 1);

	return bpf_map_lookup_elem(&sock_slots, &idx);
}

static __always_inline struct ct_sock *sock_state_of(__u64 key)
{
	struct ct_sock *si;

	if (use_cookies) {
		if (!key)
			return NULL;
		si = sock_slot(key);
		if (si && si->conn_id == key)
			return si;
		if (!socks_spilled)
			return NULL;
	}
	return bpf_map_lookup_elem(&socks, &key);
}

static __always_inline struct ct_sock *sock_state(struct sock *sk, int direct)
{
	__u64 key = sock_key(sk, direct);
	struct ct_sock *si;

	if (use_cookies && !key) {
		/* a passive child whose cookie is not settled yet (first_seen()) */
		if (!socks_spilled)
			return NULL;
		key = (__u64)sk;
		return bpf_map_lookup_elem(&socks, &key);
	}
	si = sock_state_of(key);
	/*
	 * A passive child still in SYN_RECV is kept by address even when
	 * something gave it a cookie meanwhile (a sock_diag dump:
	 * sock_diag_save_cookie()), as a TCP Fast Open child accepted and
	 * read before the handshake's last ACK can be.
	 */
	if (!si && use_cookies && socks_spilled &&
	    RD(direct, sk, __sk_common.skc_state) == TCP_SYN_RECV) {
		key = (__u64)sk;
		si = bpf_map_lookup_elem(&socks, &key);
	}
	return si;
}

/*
 * init->conn_id is the socket's cookie when slots (a constant: the
 * compare-and-swap must not be in programs for kernels before 5.12, whose
 * verifier refuses BPF_CMPXCHG even in dead code), or 0 for a passive
 * child whose cookie is not settled yet: in socks by address until then.
 */
static __always_inline struct ct_sock *sock_state_new(struct sock *sk, struct ct_sock *init,
						      int slots)
{
	__u64 key = (__u64)sk;
	struct ct_sock *si;

	if (slots) {
		__u64 was;

		if (init->conn_id) {
			key = init->conn_id;
			si = sock_slot(key);
			if (!si)
				return NULL;
			was = __sync_val_compare_and_swap(&si->conn_id, 0, key);
			if (was == key)
				return si; /* there already */
			if (!was) {
				*si = *init;
				return si;
			}
		}
		/* counted first: lookups elsewhere try socks from now on */
		__sync_fetch_and_add(&socks_spilled, 1);
	}
	if (bpf_map_update_elem(&socks, &key, init, BPF_NOEXIST)) {
		if (slots)
			__sync_fetch_and_add(&socks_spilled, -1);
		return NULL;
	}
	return bpf_map_lookup_elem(&socks, &key);
}

static __always_inline void sock_state_delete(struct ct_sock *si, struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct ct_sock *slot;

	if (use_cookies && si->conn_id) {
		key = si->conn_id;
		slot = sock_slot(key);
		if (slot && slot->conn_id == key) {
			slot->conn_id = 0; /* free */
			return;
		}
	}
	if (!bpf_map_delete_elem(&socks, &key) && use_cookies)
		__sync_fetch_and_add(&socks_spilled, -1);
}

/* the socket the current thread is connect()ing */
static __always_inline void connecting_set(struct sock *sk, int direct)
{
	__u64 id = bpf_get_current_pid_tgid(), skp = (__u64)sk, *p;

	if (direct && use_task_storage) {
		p = bpf_task_storage_get(&task_connecting, bpf_get_current_task_btf(), NULL,
					 BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (p)
			*p = skp;
		return;
	}
	bpf_map_update_elem(&connecting, &id, &skp, BPF_ANY);
}

static __always_inline struct sock *connecting_get(int direct)
{
	__u64 id = bpf_get_current_pid_tgid(), *p;

	if (direct && use_task_storage)
		p = bpf_task_storage_get(&task_connecting, bpf_get_current_task_btf(), NULL, 0);
	else
		p = bpf_map_lookup_elem(&connecting, &id);
	return p ? (struct sock *)*p : NULL;
}

/*
 * A connection's id: its socket cookie where BTF tracepoints can ask for it
 * (the id sock_diag reports, `ss -e` "sk:"; inet_twsk_alloc() copies it
 * into the timewait socket), else a per-CPU counter.
 */
static __always_inline __u64 new_conn_id(struct sock *sk, int direct)
{
	__u32 zero = 0;
	__u64 *c, n = 0;

	if (direct && use_cookies)
		return bpf_get_socket_cookie(sk);
	c = bpf_map_lookup_elem(&id_counter, &zero);
	if (c)
		n = ++*c;
	/* unique per CPU counter; stays below 2^53 for JSON readers */
	return (n << 12) | (bpf_get_smp_processor_id() & 0xfff);
}

/*
 * The 4-tuple and namespace of a full, timewait or request socket (all
 * start with struct sock_common).
 */
static __always_inline void read_tuple(const struct sock_common *skc, struct ct_tuple *t, int direct)
{
	__builtin_memset(t, 0, sizeof(*t));
	t->family = RD(direct, skc, skc_family);
	t->lport = RD(direct, skc, skc_num);
	t->rport = bpf_ntohs(RD(direct, skc, skc_dport));
	t->netns = RD(direct, RD(direct, skc, skc_net.net), ns.inum);
	if (t->family == AF_INET) {
		*(__u32 *)t->laddr = RD(direct, skc, skc_rcv_saddr);
		*(__u32 *)t->raddr = RD(direct, skc, skc_daddr);
	} else if (direct) {
		__builtin_memcpy(t->laddr, &skc->skc_v6_rcv_saddr, 16);
		__builtin_memcpy(t->raddr, &skc->skc_v6_daddr, 16);
	} else {
		bpf_core_read(t->laddr, 16, &skc->skc_v6_rcv_saddr);
		bpf_core_read(t->raddr, 16, &skc->skc_v6_daddr);
	}
}

/*
 * A full socket's tuple.  tcp_set_state() unhashes the socket and
 * inet_put_port() clears inet_num before inet_sk_state_store() fires the
 * tracepoint for CLOSE, so the local port comes from inet_sport.
 */
static __always_inline __u16 sk_lport(struct sock *sk, int direct)
{
	/* struct inet_sock around struct sock: a cast the verifier cannot follow */
	return bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
}

static __always_inline void read_sk_tuple(struct sock *sk, struct ct_tuple *t, int direct)
{
	read_tuple(&sk->__sk_common, t, direct);
	t->lport = sk_lport(sk, direct);
}

static __always_inline int tuple_eq(const struct ct_tuple *a, const struct ct_tuple *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	for (int i = 0; i < sizeof(*a) / 8; i++)
		if (x[i] != y[i])
			return 0;
	return 1;
}

static __always_inline int is_v4mapped(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
}

static __always_inline int port_listed(const volatile __u16 *list, __u32 n, __u16 port)
{
	for (int i = 0; i < CT_MAX_PORTS; i++) {
		if (i >= n)
			break;
		if (list[i] == port)
			return 1;
	}
	return 0;
}

/* in-kernel filter applied before anything reaches the ring buffer */
static __always_inline int wanted(__u32 pid, const struct ct_tuple *t)
{
	if (filter_pid && pid != filter_pid)
		return 0;
	if (filter_netns && t->netns != filter_netns)
		return 0;
	if (filter_family) {
		int v4 = t->family == AF_INET || is_v4mapped(t->laddr);

		if ((filter_family == 4) != v4)
			return 0;
	}
	if (n_lports && !port_listed(filter_lports, n_lports, t->lport))
		return 0;
	if (n_rports && !port_listed(filter_rports, n_rports, t->rport))
		return 0;
	return 1;
}

/*
 * A record is built in the ring buffer when per-connection records are
 * wanted, else (or when the ring buffer is full) in a per-CPU scratch slot
 * so that --summary still counts it.  *ring says which.
 */
static __always_inline struct ct_record *record_new(__u8 kind, const struct ct_tuple *t, int *ring)
{
	struct ct_record *r = NULL;
	__u32 zero = 0;

	*ring = 0;
	if (emit_records) {
		r = bpf_ringbuf_reserve(&rb, sizeof(*r), 0);
		if (r)
			*ring = 1;
		else
			stat_inc(CT_STAT_LOST);
	}
	if (!r) {
		if (!aggregate || kind == CT_REC_STATE)
			return NULL;
		zero = scratch_key();
		r = bpf_map_lookup_elem(&scratch, &zero);
		if (!r)
			return NULL;
	}
	__builtin_memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->ts_ns = bpf_ktime_get_ns();
	r->netns = t->netns;
	r->family = t->family;
	r->lport = t->lport;
	r->rport = t->rport;
	__builtin_memcpy(r->laddr, t->laddr, 16);
	__builtin_memcpy(r->raddr, t->raddr, 16);
	return r;
}

static __always_inline struct ct_counts *counts_get(void *map, const void *key, const char *comm)
{
	struct ct_counts *c = bpf_map_lookup_elem(map, key), zero = {};

	if (c)
		return c;
	__builtin_memcpy(zero.comm, comm, CT_COMM_LEN);
	bpf_map_update_elem(map, key, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

/*
 * Count the record in the per-CPU scratch slot into the --summary maps.  A
 * global function, so that the verifier checks it once and not at every
 * place a record is produced; without arguments, because Linux before 5.12
 * cannot verify a global function with a pointer argument ("Arg#0 type PTR
 * ... is not supported yet", btf_prepare_func_args()), and before 6.3 a map
 * key may not point into a ring buffer record (check_helper_mem_access()).
 */
__noinline int account(void)
{
	struct ct_summary *s;
	struct ct_counts *c;
	struct ct_endpoint e = {};
	struct ct_record *r;
	__u32 zero = 0, key = scratch_key();

	r = bpf_map_lookup_elem(&scratch, &key);
	if (!r)
		return 0;
	s = bpf_map_lookup_elem(&summary, &zero);
	if (s)
		ct_summary_account(s, r);
	if (r->kind != CT_REC_CLOSE)
		return 0;
	c = counts_get(&proc_counts, &r->pid, r->comm);
	if (c)
		ct_counts_account(c, r);
	ct_endpoint_of(&e, r);
	c = counts_get(&endpoint_counts, &e, "");
	if (c)
		ct_counts_account(c, r);
	return 0;
}

static __always_inline void record_submit(struct ct_record *r, int ring)
{
	__u64 flags = 0;

	if (aggregate) {
		/* a record in the ring buffer is counted from a copy in scratch */
		if (ring) {
			__u32 key = scratch_key();
			struct ct_record *copy = bpf_map_lookup_elem(&scratch, &key);

			if (copy)
				__builtin_memcpy(copy, r, sizeof(*r));
		}
		account();
	}
	if (!ring)
		return;
	/*
	 * Batch wake-ups: the loader drains on a short timeout anyway.  But
	 * wake it at once for what it must explain while the processes
	 * involved are still there (holders of a socket, users of a port).
	 */
	if (r->kind == CT_REC_CLOSE_DEFERRED || r->kind == CT_REC_BIND_CONFLICT)
		flags = BPF_RB_FORCE_WAKEUP;
	else if (wakeup_bytes)
		flags = bpf_ringbuf_query(&rb, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
				BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	/* records are counted by the loader: no shared counter on the hot path */
	bpf_ringbuf_submit(r, flags);
}

static __always_inline void set_owner_current(__u32 *pid, char *comm)
{
	*pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(comm, CT_COMM_LEN);
}

/* a record about a tracked connection, its identity filled in; NULL if filtered or lost */
static __always_inline struct ct_record *sock_record(__u8 kind, struct ct_sock *si,
						      const struct ct_tuple *t, int *ring)
{
	struct ct_record *r;

	if (!wanted(si->pid, t))
		return NULL;
	r = record_new(kind, t, ring);
	if (!r)
		return NULL;
	r->conn_id = si->conn_id;
	r->pid = si->pid;
	r->flags = si->flags;
	r->initiator = si->initiator;
	__builtin_memcpy(r->comm, si->comm, CT_COMM_LEN);
	return r;
}

static __always_inline void emit_close(struct ct_sock *si, const struct ct_tuple *t)
{
	struct ct_record *r;
	int ring;

	r = sock_record(CT_REC_CLOSE, si, t, &ring);
	if (!r)
		return;
	r->visited = si->visited;
	r->method = si->method;
	r->app_method = si->app_method;
	r->exit_signal = si->exit_signal;
	r->linger = si->linger;
	r->linger_ns = si->linger_ns;
	r->ino = si->ino;
	__builtin_memcpy(r->state_ns, si->state_ns, sizeof(r->state_ns));
	record_submit(r, ring);
}

static __always_inline void emit_state(struct ct_sock *si, const struct ct_tuple *t, int old, int new)
{
	struct ct_record *r;
	int ring;

	if (!emit_states)
		return;
	r = sock_record(CT_REC_STATE, si, t, &ring);
	if (!r)
		return;
	r->oldstate = old;
	r->newstate = new;
	record_submit(r, ring);
}

static __always_inline void emit_connect_fail(struct ct_sock *si, const struct ct_tuple *t)
{
	struct ct_record *r;
	int ring;

	r = sock_record(CT_REC_CONNECT_FAIL, si, t, &ring);
	if (r)
		record_submit(r, ring);
}

/* Owner of a socket first seen mid-life: the -p process if it held it at start-up. */
static __always_inline void owner_from_inode(struct sock *sk, struct ct_sock *si, int direct)
{
	__u64 ino = RD(direct, RD(direct, RD(direct, RD(direct, sk, sk_socket), file), f_inode), i_ino);
	__u32 *pid;

	if (!ino)
		return;
	pid = bpf_map_lookup_elem(&target_inodes, &ino);
	if (pid)
		si->pid = *pid;
}

/* The kernel's TCP states, from include/net/tcp_states.h. */
enum {
	S_ESTABLISHED = 1,
	S_SYN_SENT,
	S_SYN_RECV,
	S_FIN_WAIT1,
	S_FIN_WAIT2,
	S_TIME_WAIT,
	S_CLOSE,
	S_CLOSE_WAIT,
	S_LAST_ACK,
	S_LISTEN,
	S_CLOSING,
	S_NEW_SYN_RECV,
};

static __always_inline void finish(struct ct_sock *si, const struct ct_tuple *t, struct sock *sk)
{
	emit_close(si, t);
	sock_state_delete(si, sk);
}

/* SO_LINGER on, and its time in jiffies */
static __always_inline int sk_linger(struct sock *sk, __u64 *ticks, int direct)
{
	unsigned long flags = RD(direct, sk, __sk_common.skc_flags);

	*ticks = RD(direct, sk, sk_lingertime);
	return flags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_LINGER));
}

/* the process doing this close is exiting: do_exit() -> exit_files() */
static __always_inline int current_exiting(struct ct_sock *si, int direct)
{
	struct task_struct *task;

	if (direct && use_task_btf) {
		task = bpf_get_current_task_btf();
		if (!(task->flags & PF_EXITING))
			return 0;
		si->exit_signal = task->exit_code & 0x7f;
	} else {
		task = (void *)bpf_get_current_task();
		if (!(BPF_CORE_READ(task, flags) & PF_EXITING))
			return 0;
		si->exit_signal = BPF_CORE_READ(task, exit_code) & 0x7f;
	}
	si->flags |= CT_F_EXITING;
	return 1;
}

/*
 * How the current process closes sk, at a transition tcp_close_state()
 * makes in its context (ESTABLISHED -> FIN_WAIT1, CLOSE_WAIT -> LAST_ACK).
 * sock_close() -> __tcp_close() runs from __fput(), after the last
 * reference to the file went; shutdown() holds a live reference.
 */
static __always_inline __u8 app_close_method(struct sock *sk, struct ct_sock *si, __u64 now, int direct)
{
	struct socket *sock = RD(direct, sk, sk_socket);
	struct file *file = sock ? RD(direct, sock, file) : NULL;
	__u64 ticks;

	if (file) {
		si->ino = RD(direct, RD(direct, file, f_inode), i_ino);
		if (file_refs(file, direct) > 0)
			return CT_M_SHUTDOWN;
	}
	if (current_exiting(si, direct))
		return CT_M_EXIT;
	/* tcp_close(): with SO_LINGER {1, N} close() waits in sk_stream_wait_close() */
	if (sk_linger(sk, &ticks, direct) && ticks) {
		si->close_ts = now;
		si->linger_ns = ticks * (1000000000ULL / hz);
		return CT_M_LINGER_WAIT;
	}
	return CT_M_CLOSE;
}

/*
 * A waiting close() returns once the state leaves FIN_WAIT1/CLOSING/
 * LAST_ACK (sk_stream_wait_close()) or when the linger time runs out.
 */
static __always_inline void settle_linger(struct ct_sock *si, int old, __u64 now)
{
	if (!si->linger_ns || si->linger != CT_LINGER_NONE)
		return;
	if (old != S_FIN_WAIT1 && old != S_CLOSING && old != S_LAST_ACK)
		return;
	si->linger = now - si->close_ts <= si->linger_ns ? CT_LINGER_ACKED : CT_LINGER_TIMEOUT;
}

/*
 * A timewait socket that existed when tracing began, at its first timer
 * event: the loader's seed (keyed by idiag_cookie, which
 * sock_diag_save_cookie() -> sock_gen_cookie() wrote into the socket's
 * skc_cookie) becomes its entry in tws under that cookie.  Not when the
 * socket is in tws by address already: it was scheduled after tracing
 * began, without a cookie then.  Returns 1 when an entry was made.
 */
static __noinline int tw_adopt(__u64 addr, __u64 cookie)
{
	struct tw_info ti = {};
	struct ct_tw_seed *s;
	int made = 0;

	s = bpf_map_lookup_elem(&tw_seeds, &cookie);
	if (!s)
		return 0;
	if (!tw_by_address || !bpf_map_lookup_elem(&tws, &addr)) {
		ti.tw = addr;
		ti.conn_id = s->conn_id;
		ti.start_ns = s->start_ns;
		ti.flags = s->flags;
		ti.initiator = s->initiator;
		made = !bpf_map_update_elem(&tws, &cookie, &ti, BPF_NOEXIST);
		if (!made)
			stat_inc(CT_STAT_TW_FULL);
	}
	if (!bpf_map_delete_elem(&tw_seeds, &cookie))
		__sync_fetch_and_add(&tw_seeds_left, -1);
	return made;
}

/*
 * A timewait socket's entry in tws, and its key there.  Keyed by address
 * are only those without a cookie and those whose cookie another timewait
 * socket held when they came: when there are none, one lookup (a cache
 * miss in a big table) is enough.
 */
static __always_inline struct tw_info *tw_state(struct inet_timewait_sock *tw, __u64 *key)
{
	struct tw_info *ti;

	*key = BPF_CORE_READ(tw, __tw_common.skc_cookie.counter);
	if (*key) {
		ti = bpf_map_lookup_elem(&tws, key);
		if (!ti && tw_seeds_left && tw_adopt((__u64)tw, *key))
			ti = bpf_map_lookup_elem(&tws, key);
		if (ti && ti->tw == (__u64)tw)
			return ti;
		if (!tw_by_address)
			return NULL;
	}
	*key = (__u64)tw;
	return bpf_map_lookup_elem(&tws, key);
}

static __always_inline void tw_delete(struct tw_info *ti, __u64 key)
{
	if (key == ti->tw)
		__sync_fetch_and_add(&tw_by_address, -1);
	bpf_map_delete_elem(&tws, &key);
}

/*
 * The first event of a socket: its state, entered into its slot or socks.
 * Called through the two subprograms below (not inlined, so that the
 * zeroed state on its stack costs only there).
 */
static __always_inline struct ct_sock *first_seen(struct sock *sk, int old, int new, __u64 now,
						  int direct, int slots)
{
	struct ct_sock zero = {};
	struct ct_sock *si;

	/*
	 * inet_csk_clone_lock() fires LISTEN -> SYN_RECV for a passive child
	 * before it copies the request socket's cookie into it
	 * (atomic64_set(&newsk->sk_cookie, ...ir_cookie)): a cookie given now
	 * would be overwritten (Linux 6.1 and 6.12 do; 6.18 has the cookie
	 * set by then).  Such a child is kept by address until it leaves
	 * SYN_RECV (settle_passive()).
	 */
	if (!(slots && old == S_LISTEN && new == S_SYN_RECV))
		zero.conn_id = new_conn_id(sk, direct);
	zero.initiator = CT_INIT_NONE;
	if (old == S_CLOSE && new == S_SYN_SENT) {
		zero.state_ts = now;
	} else if (old == S_LISTEN && new == S_SYN_RECV) {
		/* a passive child: owned by the listener's process */
		zero.flags = CT_F_PASSIVE;
		struct ct_listener_key lk = {
			.netns = RD(direct, RD(direct, sk, __sk_common.skc_net.net), ns.inum),
			.port = sk_lport(sk, direct),
		};
		struct ct_owner *o = bpf_map_lookup_elem(&listeners, &lk);

		if (o) {
			zero.pid = o->pid;
			__builtin_memcpy(zero.comm, o->comm, CT_COMM_LEN);
		}
		zero.state_ts = now;
	} else {
		/* existed before tracing started */
		/* the current state's start is unknown: not reported */
		zero.flags = CT_F_PREEXISTING;
		/*
		 * A closing state says who began: CLOSE_WAIT and
		 * LAST_ACK follow the peer's FIN, FIN_WAIT1/2 our own
		 * (a FIN_WAIT1 that goes on to CLOSING becomes
		 * simultaneous below).
		 */
		if (old == S_CLOSE_WAIT || old == S_LAST_ACK) {
			zero.initiator = CT_INIT_REMOTE;
			zero.method = CT_M_FIN;
		} else if (old == S_FIN_WAIT1 || old == S_FIN_WAIT2) {
			zero.initiator = CT_INIT_LOCAL;
		} else if (old == S_CLOSING) {
			zero.initiator = CT_INIT_SIMULTANEOUS;
		} else if (old != S_ESTABLISHED && old != S_SYN_SENT && old != S_SYN_RECV) {
			zero.initiator = CT_INIT_UNKNOWN;
		}
		if (filter_pid)
			owner_from_inode(sk, &zero, direct);
	}
	si = sock_state_new(sk, &zero, slots);
	/*
	 * Counted where a close goes unreported: once per connection, not at
	 * every event of a socket that found the table full.
	 */
	if (!si && new == S_CLOSE && old != S_SYN_SENT && old != S_SYN_RECV)
		stat_inc(CT_STAT_SOCKS_FULL);
	return si;
}

static __noinline struct ct_sock *sock_first_seen(struct sock *sk, int old, int new, __u64 now,
						  int direct)
{
	return first_seen(sk, old, new, now, direct, 0);
}

static __noinline struct ct_sock *sock_first_seen_slots(struct sock *sk, int old, int new, __u64 now)
{
	return first_seen(sk, old, new, now, 1, 1);
}

/*
 * A passive child past LISTEN -> SYN_RECV: its cookie is final now.  Its
 * state moves from socks by address to its slot (or socks by cookie).
 */
static __noinline struct ct_sock *settle_passive(struct sock *sk, struct ct_sock *si)
{
	__u64 addr = (__u64)sk;
	struct ct_sock *moved;

	si->conn_id = bpf_get_socket_cookie(sk);
	moved = sock_state_new(sk, si, 1);
	if (!moved) {
		si->conn_id = 0;
		return si; /* stays where it is */
	}
	if (!bpf_map_delete_elem(&socks, &addr))
		__sync_fetch_and_add(&socks_spilled, -1);
	return moved;
}

/*
 * The timewait socket that tcp_time_wait() has just scheduled for this
 * full socket (timer_start, below), not yet joined to it.  Found by the
 * socket cookie where the kernel lets us give sockets one (through
 * tw_collided when an older timewait socket holds the cookie), else through
 * tw_birth by 4-tuple.  *key is its key in tws.
 */
static __always_inline struct tw_info *tw_born(struct ct_sock *si, struct ct_tuple *t, __u64 *key,
					       int direct)
{
	struct tw_info *ti;
	__u32 zero = 0;
	__u64 *kp;

	if (direct && use_cookies) {
		__u64 *c = bpf_map_lookup_elem(&tw_collided, &zero);

		*key = si->conn_id;
		if (c && c[0] == si->conn_id) {
			*key = c[1];
			c[0] = 0;
		}
	} else {
		kp = bpf_map_lookup_elem(&tw_birth, t);
		if (!kp)
			return NULL;
		*key = *kp;
		bpf_map_delete_elem(&tw_birth, t);
	}
	ti = bpf_map_lookup_elem(&tws, key);
	return ti && !ti->claimed ? ti : NULL;
}

/* Did this socket's timewait socket find tws full (tw_unkept)? */
static __always_inline int tw_was_unkept(struct ct_sock *si, const struct ct_tuple *t, int direct)
{
	__u32 zero = 0;
	struct tw_unkept *u = bpf_map_lookup_elem(&tw_unkept, &zero);

	if (!u)
		return 0;
	if (direct && use_cookies ? u->cookie != si->conn_id : !tuple_eq(&u->t, t))
		return 0;
	u->cookie = 0;
	__builtin_memset(&u->t, 0, sizeof(u->t));
	return 1;
}

/* close_pending: an orphan's FIN_WAIT2 -> CLOSE that an RST should follow */
#define CLOSE_PENDING_ABORT 0x80

/* sock_orphan() was called: no process holds the socket any more */
static __always_inline int sk_dead(struct sock *sk, int direct)
{
	unsigned long flags = RD(direct, sk, __sk_common.skc_flags);

	return !!(flags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DEAD)));
}

/*
 * tcp_keepalive_timer(), out of probes, sends an RST (tcp_send_active_reset())
 * and then tcp_write_err() sets ETIMEDOUT: the RST made the connection look
 * reset by this side (handle_reset()), with no close() before it.
 */
static __always_inline int keepalive_reset(const struct ct_sock *si)
{
	return si->initiator == CT_INIT_LOCAL_RESET && si->method == CT_M_NONE;
}

/*
 * tcp_rcv_state_process(), FIN_WAIT1, on an orphan: a segment that acks our
 * FIN but carries new data (or any, with TCP_LINGER2 < 0) goes FIN_WAIT2 ->
 * tcp_done() -> CLOSE -> tcp_destroy_sock, and the non-zero return makes
 * tcp_v4_do_rcv()/tcp_v6_do_rcv() send an RST with the same socket
 * (LINUX_MIB_TCPABORTONDATA).  The close record waits here, per CPU, for
 * that RST.  Any other TCP event on this CPU first means there was none:
 * then it was tcp_time_wait() after all, and its timewait socket either
 * was made but not tracked (tws full) or was not made (the table filled up
 * between inet_twsk_alloc() and our look, or the allocation failed).  That
 * is not known, so the record claims neither.  Returns 1 when sk's RST
 * settled it.
 */
static __always_inline int rst_wait_settle(struct sock *sk, int sent)
{
	struct rst_wait *w;
	__u32 zero = 0;
	int rst;

	if (!rst_waits)
		return 0;
	w = bpf_map_lookup_elem(&rst_wait, &zero);
	if (!w || !w->sk)
		return 0;
	rst = sent && w->sk == (__u64)sk;
	if (rst) {
		w->si.flags |= CT_F_RST_SENT;
		w->si.method = CT_M_ABORT_ON_DATA;
	}
	emit_close(&w->si, &w->t);
	w->sk = 0;
	__sync_fetch_and_add(&rst_waits, -1);
	return rst;
}

/* tcp_destroy_sock of such an orphan: its state moves to rst_wait */
static __always_inline void rst_wait_begin(struct sock *sk, struct ct_sock *si,
					   const struct ct_tuple *t)
{
	struct rst_wait *w;
	__u32 zero = 0;

	w = bpf_map_lookup_elem(&rst_wait, &zero);
	if (!w) {
		finish(si, t, sk);
		return;
	}
	w->si = *si;
	w->t = *t;
	w->sk = (__u64)sk;
	__sync_fetch_and_add(&rst_waits, 1);
	sock_state_delete(si, sk);
}

/*
 * The method of a close that set CLOSE before its RST: __tcp_close() with
 * unread data (SK_RST_REASON_TCP_ABORT_ON_CLOSE on 6.10+), or
 * tcp_disconnect() (SK_RST_REASON_TCP_STATE).  tcp_disconnect() comes from
 * __tcp_close() for SO_LINGER {1, 0}, or from inet_csk_listen_stop() ->
 * inet_child_forget() for a child never accept()ed (it has no struct
 * socket) when its listener closes: the same reason, so SO_LINGER itself
 * tells them apart.  __tcp_close() checks unread data before SO_LINGER.
 */
static __always_inline __u8 close_reset_method(struct sock *sk, int pending, int reason, int direct)
{
	__u64 ticks;

	if ((pending == S_ESTABLISHED || pending == S_CLOSE_WAIT) && !RD(direct, sk, sk_socket))
		return CT_M_LISTENER_CLOSED;
	/* reason is the constant -1 where enum sk_rst_reason is missing: its relocation is never run */
	if (reason >= 0 &&
	    reason == bpf_core_enum_value(enum sk_rst_reason, SK_RST_REASON_TCP_ABORT_ON_CLOSE))
		return CT_M_UNREAD_RESET;
	if (sk_linger(sk, &ticks, direct) && !ticks)
		return CT_M_LINGER_RESET;
	/* before 6.10 __tcp_close()'s other RST; after, a tcp_disconnect() (connect(AF_UNSPEC)) */
	return reason < 0 ? CT_M_UNREAD_RESET : CT_M_NONE;
}

/*
 * A passive child that closes without having been ESTABLISHED was still a
 * connection when a process accepted it or data went either way: a TCP
 * Fast Open child (tcp_fastopen_create_child()) is queued for accept()
 * with the SYN's data (tcp_fastopen_add_skb() counts it in bytes_received)
 * while it waits in SYN_RECV for the handshake's last ACK, and may die
 * there (the peer's RST, close() with unread data, tcp_disconnect() from
 * inet_csk_listen_stop() or connect(AF_UNSPEC)).
 */
static __always_inline int passive_carried_data(struct sock *sk, struct ct_sock *si)
{
	struct tcp_sock *tp = (void *)sk;

	if (si->flags & CT_F_ACCEPTED)
		return 1;
	if (!(si->flags & CT_F_PASSIVE))
		return 0;
	if (BPF_CORE_READ(tp, bytes_received))
		return 1;
	return bpf_core_field_exists(tp->bytes_sent) && BPF_CORE_READ(tp, bytes_sent);
}

static __always_inline int handle_set_state(struct sock *sk, int old, int new, int direct, int slots)
{
	__u64 now;
	struct ct_sock *si;
	struct ct_tuple t;

	if (RD(direct, sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	rst_wait_settle(sk, 0);
	old &= CT_NSTATES - 1;
	new &= CT_NSTATES - 1;

	if (new == S_LISTEN || (old == S_LISTEN && new == S_CLOSE)) {
		/* listen() runs in the owner's context: children inherit it */
		struct ct_listener_key lk = {
			.netns = RD(direct, RD(direct, sk, __sk_common.skc_net.net), ns.inum),
			.port = sk_lport(sk, direct),
		};
		struct ct_owner o = {};

		if (new == S_LISTEN) {
			set_owner_current(&o.pid, o.comm);
			bpf_map_update_elem(&listeners, &lk, &o, BPF_ANY);
		} else {
			bpf_map_delete_elem(&listeners, &lk);
		}
		return 0;
	}

	now = bpf_ktime_get_ns();
	si = NULL;
	if (slots && old == S_SYN_RECV && socks_spilled) {
		/* a passive child kept by address since LISTEN -> SYN_RECV (first_seen()) */
		__u64 addr = (__u64)sk;

		si = bpf_map_lookup_elem(&socks, &addr);
		if (si)
			si = settle_passive(sk, si);
	}
	if (!si)
		si = sock_state(sk, direct);
	if (!si) {
		if (new == S_CLOSE && (old == S_CLOSE || old == S_SYN_SENT))
			return 0; /* a connect() that failed at once */
		si = slots ? sock_first_seen_slots(sk, old, new, now) :
			     sock_first_seen(sk, old, new, now, direct);
		if (!si)
			return 0;
	}

	if (si->state_ts)
		si->state_ns[old] += now - si->state_ts;
	si->state_ts = now;
	si->visited |= 1 << new;

	/*
	 * Transitions that only happen in the calling process's context, so
	 * current is the socket's owner: connect() (tcp_v4_connect), close()
	 * and shutdown() (tcp_close_state), close() after shutdown() (the
	 * self-transition FIN_WAIT2 -> FIN_WAIT2).  Others may run in softirq,
	 * on loopback inside whatever process sent the packet.
	 */
	if (old == S_CLOSE && new == S_SYN_SENT) {
		set_owner_current(&si->pid, si->comm);
		connecting_set(sk, direct);
	} else if (((old == S_ESTABLISHED || old == S_SYN_RECV) && new == S_FIN_WAIT1) ||
		   (old == S_CLOSE_WAIT && new == S_LAST_ACK)) {
		__u8 m = app_close_method(sk, si, now, direct);

		set_owner_current(&si->pid, si->comm);
		if (new == S_LAST_ACK)
			si->app_method = m;
		else if (si->method == CT_M_NONE)
			si->method = m;
	} else if (old == new) {
		set_owner_current(&si->pid, si->comm);
	}
	settle_linger(si, old, now);
	si->state = new;
	if (watch_tuples && (new == S_CLOSE_WAIT || new == S_FIN_WAIT2))
		read_sk_tuple(sk, &si->t, direct);

	if (si->initiator == CT_INIT_NONE) {
		if (new == S_FIN_WAIT1)
			si->initiator = CT_INIT_LOCAL;
		else if (new == S_CLOSE_WAIT)
			si->initiator = CT_INIT_REMOTE;
	}
	if (new == S_CLOSE_WAIT && si->method == CT_M_NONE)
		si->method = CT_M_FIN;
	/* FIN_WAIT1 -> CLOSING: the peer's FIN arrived before the ACK of ours */
	if (new == S_CLOSING && si->initiator == CT_INIT_LOCAL)
		si->initiator = CT_INIT_SIMULTANEOUS;

	if (new != S_CLOSE) {
		if (emit_states) {
			read_sk_tuple(sk, &t, direct);
			emit_state(si, &t, old, new);
		}
		return 0;
	}

	/* CLOSE: the full socket is done */
	read_sk_tuple(sk, &t, direct);
	{
		int err = RD(direct, sk, sk_err);
		struct tw_info *ti = NULL;
		__u64 twkey;

		if (err == ETIMEDOUT && (si->initiator == CT_INIT_NONE || keepalive_reset(si)))
			si->initiator = CT_INIT_TIMEOUT;
		if (si->initiator == CT_INIT_NONE && err == ECONNRESET)
			si->initiator = CT_INIT_REMOTE_RESET;

		/* tcp_time_wait() is only called from FIN_WAIT2 and CLOSING */
		if (old == S_FIN_WAIT2 || old == S_CLOSING)
			ti = tw_born(si, &t, &twkey, direct);
		if (ti) {
			/*
			 * tcp_time_wait() scheduled the timewait socket just
			 * before tcp_done() moved this one to CLOSE: hand the
			 * connection over to it.
			 */
			si->flags |= CT_F_TIMEWAIT | (ti->flags & CT_F_TW_FIN_WAIT2);
			if (!wanted(si->pid, &t)) {
				tw_delete(ti, twkey);
			} else {
				ti->conn_id = si->conn_id;
				ti->pid = si->pid;
				ti->initiator = si->initiator;
				ti->method = si->method;
				ti->fw2_ns = si->state_ns[S_FIN_WAIT2];
				ti->claimed = 1;
				__builtin_memcpy(ti->comm, si->comm, CT_COMM_LEN);
			}
			if (emit_states)
				emit_state(si, &t, old, CT_TCP_TIMEWAIT);
			finish(si, &t, sk);
			return 0;
		}
		if ((old == S_FIN_WAIT2 || old == S_CLOSING) && tw_was_unkept(si, &t, direct)) {
			si->flags |= CT_F_TIMEWAIT | CT_F_TW_UNTRACKED;
			stat_inc(CT_STAT_TW_FULL);
			if (emit_states)
				emit_state(si, &t, old, CT_TCP_TIMEWAIT);
			finish(si, &t, sk);
			return 0;
		}
		if (emit_states)
			emit_state(si, &t, old, new);

		if (!(si->visited & (1 << S_ESTABLISHED)) && !(si->flags & CT_F_PREEXISTING) &&
		    !passive_carried_data(sk, si)) {
			/*
			 * A handshake that never completed: not a close.  With
			 * no local port and no error, tcp_v4_connect()'s
			 * inet_hash_connect() found no free 4-tuple
			 * (EADDRNOTAVAIL).
			 */
			if (track_connect_fail && old == S_SYN_SENT && !t.lport && !err)
				emit_connect_fail(si, &t);
			sock_state_delete(si, sk);
			return 0;
		}
		if (si->flags & (CT_F_RST_SENT | CT_F_RST_RECEIVED) || err ||
		    old == S_LAST_ACK || old == S_SYN_SENT) {
			if (old == S_CLOSING && !(si->flags & CT_F_RST_SENT))
				si->flags |= CT_F_TW_NOT_CREATED;
			finish(si, &t, sk);
			return 0;
		}
		if (old == S_CLOSING) {
			/* tcp_time_wait() found the timewait table full */
			si->flags |= CT_F_TW_NOT_CREATED;
			finish(si, &t, sk);
			return 0;
		}
		/*
		 * ESTABLISHED/CLOSE_WAIT/FIN_WAIT* -> CLOSE with no error: either
		 * __tcp_close() with unread data or tcp_disconnect() for
		 * SO_LINGER {1,0}, both of which set CLOSE *before* sending the
		 * RST, or (FIN_WAIT2) tcp_time_wait() with a full timewait
		 * table.  Wait for tcp_send_reset or tcp_destroy_sock to tell.
		 */
		if (old == S_ESTABLISHED || old == S_CLOSE_WAIT) {
			/*
			 * Without a struct socket, a child never accept()ed,
			 * reset as its listener closes (close_reset_method()):
			 * it stays with the listener's owner.
			 */
			if (RD(direct, sk, sk_socket) || !si->pid)
				set_owner_current(&si->pid, si->comm);
			current_exiting(si, direct);
		}
		si->close_pending = old;
		/* an orphan's, with room for a timewait socket: see rst_wait_settle() */
		if (old == S_FIN_WAIT2 && sk_dead(sk, direct) && !tw_table_full(sk))
			si->close_pending |= CLOSE_PENDING_ABORT;
	}
	return 0;
}

/* tcp_destroy_sock: the socket is freed; settle a pending close */
static __always_inline int handle_destroy(struct sock *sk, int direct)
{
	struct ct_sock *si;
	struct ct_tuple t;

	rst_wait_settle(sk, 0);
	si = sock_state(sk, direct);
	if (!si)
		return 0;
	if (si->close_pending) {
		read_sk_tuple(sk, &t, direct);
		if (si->close_pending & CLOSE_PENDING_ABORT) {
			rst_wait_begin(sk, si, &t);
			return 0;
		}
		/* tcp_time_wait() found the timewait table full */
		if (si->close_pending == S_FIN_WAIT2 && !(si->flags & CT_F_RST_SENT))
			si->flags |= CT_F_TW_NOT_CREATED;
		finish(si, &t, sk);
		return 0;
	}
	sock_state_delete(si, sk);
	return 0;
}

/*
 * reason: enum sk_rst_reason where the kernel has it (Linux 6.10+), else -1.
 * An RST sent while a close is pending comes from __tcp_close() (unread
 * data: SK_RST_REASON_TCP_ABORT_ON_CLOSE) or tcp_disconnect() (SO_LINGER
 * {1, 0}: SK_RST_REASON_TCP_STATE).  __tcp_close() checks unread data first.
 */
static __always_inline int handle_reset(struct sock *sk, int sent, int reason, int direct)
{
	struct ct_sock *si;
	int state;
	struct ct_tuple t;

	if (!sk)
		return 0;
	/*
	 * tcp_v4_send_reset() may be given a timewait or request socket:
	 * not ours (a timewait socket has its full socket's cookie).
	 */
	state = RD(direct, sk, __sk_common.skc_state);
	if (state == S_TIME_WAIT || state == S_NEW_SYN_RECV)
		return 0;
	if (rst_wait_settle(sk, sent))
		return 0;
	si = sock_state(sk, direct);
	if (!si)
		return 0;
	si->flags |= sent ? CT_F_RST_SENT : CT_F_RST_RECEIVED;
	if (si->initiator == CT_INIT_NONE)
		si->initiator = sent ? CT_INIT_LOCAL_RESET : CT_INIT_REMOTE_RESET;
	if (!sent && si->method == CT_M_NONE)
		si->method = CT_M_RST;
	if (sent && si->close_pending) {
		__u8 m = close_reset_method(sk, si->close_pending, reason, direct);

		if (si->close_pending == S_CLOSE_WAIT)
			si->app_method = m;
		else if (si->method == CT_M_NONE)
			si->method = m;
		read_sk_tuple(sk, &t, direct);
		finish(si, &t, sk);
	}
	return 0;
}

static __always_inline int handle_error_report(const struct sock *sk, int direct)
{
	struct ct_sock *si = sock_state((struct sock *)sk, direct);
	int err;

	if (!si)
		return 0;
	err = RD(direct, sk, sk_err);
	if (err == ETIMEDOUT && (si->initiator == CT_INIT_NONE || keepalive_reset(si)))
		si->initiator = CT_INIT_TIMEOUT;
	else if (err == ECONNRESET && si->initiator == CT_INIT_NONE)
		si->initiator = CT_INIT_REMOTE_RESET;
	return 0;
}

/* ---- TIME_WAIT, through the timewait timer ---- */

static __always_inline struct inet_timewait_sock *timer_tw(struct timer_list *timer)
{
	return (void *)((unsigned long)timer -
			bpf_core_field_offset(struct inet_timewait_sock, tw_timer));
}

/*
 * What tcp_twsk_unique() decided the reuse with: the connecting socket's
 * namespace sysctls and whether it had bound its port (then the kernel
 * passes no twp and consults neither tcp_tw_reuse nor the delay).
 */
static __always_inline void reuse_facts(struct ct_record *r, struct sock *reuser)
{
	struct net *net = BPF_CORE_READ(reuser, __sk_common.skc_net.net);

	set_owner_current(&r->reuse_pid, r->reuse_comm);
	r->reuse_sysctl = BPF_CORE_READ(net, ipv4.sysctl_tcp_tw_reuse);
	if (bpf_core_field_exists(net->ipv4.sysctl_tcp_tw_reuse_delay)) {
		r->reuse_delay_ms = BPF_CORE_READ(net, ipv4.sysctl_tcp_tw_reuse_delay);
		r->flags |= CT_F_REUSE_DELAY;
	}
	if (BPF_CORE_READ_BITFIELD_PROBED(reuser, sk_userlocks) & SOCK_BINDPORT_LOCK)
		r->flags |= CT_F_REUSE_BOUND;
}

static __always_inline void tw_facts_read(struct inet_timewait_sock *tw, struct tw_facts *f)
{
	f->expires = BPF_CORE_READ(tw, tw_timer.expires);
	f->bound_dev_if = BPF_CORE_READ(tw, __tw_common.skc_bound_dev_if);
	f->substate = BPF_CORE_READ(tw, tw_substate);
}

static __always_inline void emit_tw_end(const struct tw_facts *f, struct tw_info *ti, __u64 key,
					const struct ct_tuple *t, __u8 end, struct sock *reuser,
					__u64 now)
{
	__u64 begin = ti->start_ns, flags = 0;
	struct ct_record *r;
	int ring, substate;

	if (!wanted(ti->pid, t))
		goto out;
	substate = f->substate;
	if (ti->flags & CT_F_TW_FIN_WAIT2) {
		/*
		 * Began as an orphaned FIN_WAIT2 (tcp_time_wait(sk,
		 * TCP_FIN_WAIT2, tmo)).  When the FIN arrived,
		 * tcp_timewait_state_process() set TIME_WAIT and re-armed the
		 * timer with inet_twsk_reschedule(tw, TCP_TIMEWAIT_LEN).  Its
		 * timer_start gives the time, but __mod_timer() emits nothing
		 * when the new expiry falls in the same wheel bucket (within
		 * about 2 s: a bucket of the 60 s level spans 512 jiffies at
		 * HZ=250); then the new expiry tells the FIN's jiffy, counted
		 * from the jiffy the timewait socket began in: within one
		 * jiffy of the truth, and flagged as estimated.
		 */
		if (ti->fin_ns) {
			begin = ti->fin_ns;
		} else if (substate == S_TIME_WAIT) {
			__u64 jbegin = f->expires - TCP_TIMEWAIT_LEN_S * (__u64)hz;

			if (jbegin > ti->start_j && hz)
				begin += (jbegin - ti->start_j) * (1000000000ULL / hz);
			if (begin > now)
				begin = now;
			flags = CT_F_TW_SPLIT_ESTIMATED;
		} else {
			begin = now; /* never left FIN_WAIT2 */
		}
	}
	r = record_new(CT_REC_TIMEWAIT, t, &ring);
	if (!r)
		goto out;
	r->conn_id = ti->conn_id;
	r->pid = ti->pid;
	r->flags = ti->flags | flags;
	r->initiator = ti->initiator;
	r->method = ti->method;
	r->tw_end = end;
	r->tw_ns = now - begin;
	r->tw_sock_ns = now - ti->start_ns;
	r->state_ns[S_FIN_WAIT2] = ti->fw2_ns + (begin - ti->start_ns);
	r->state_ns[S_TIME_WAIT] = now - begin;
	r->visited = 1 << S_TIME_WAIT;
	if (r->state_ns[S_FIN_WAIT2])
		r->visited |= 1 << S_FIN_WAIT2;
	if (substate == S_FIN_WAIT2)
		r->flags |= CT_F_END_FIN_WAIT2;
	r->bound_dev_if = f->bound_dev_if;
	__builtin_memcpy(r->comm, ti->comm, CT_COMM_LEN);
	if (reuser)
		reuse_facts(r, reuser);
	record_submit(r, ring);
out:
	tw_delete(ti, key);
}

/* a pending cancel was a kill: the TIME_WAIT ended at the cancel */
static __always_inline void settle_kill(struct pending_cancel *p, __u8 end)
{
	struct tw_info *ti = bpf_map_lookup_elem(&tws, &p->key);

	if (ti && ti->tw == p->tw)
		emit_tw_end(&p->f, ti, p->key, &p->t, end, NULL, p->ts);
	p->tw = 0;
	__sync_fetch_and_add(&pending_cancels, -1);
}

/*
 * A timewait timer cancel is a kill (inet_twsk_deschedule_put()), the first
 * half of a re-arm (__mod_timer() detaches a pending timer, emitting
 * timer_cancel, then emits timer_start), or the detach before the timer
 * runs (expire_timers() emits timer_cancel, then timer_expire_entry).  The
 * last is recognised at the cancel where the kernel lets us (see
 * timer_expiring()).  The halves of a re-arm come under the base lock with
 * interrupts off, so whatever timer event comes next on this CPU settles
 * a cancel: the start of the same timer is a re-arm, anything else a kill
 * (dated to the cancel).  Where timer_expiring() cannot say, a cancel past
 * the timer's expiry is taken for an expiry (due): only its own
 * timer_expire_entry, or the next timewait cancel, settles it.
 * Returns 1 when the event finishes the pending tw's cancel (not a kill).
 */
static __always_inline int settle_pending(struct timer_list *timer, __u64 fn, int starting)
{
	__u32 zero = 0;
	struct pending_cancel *p;
	__u8 end = CT_TW_RESET;

	if (!pending_cancels)
		return 0;
	p = bpf_map_lookup_elem(&pending, &zero);
	if (!p || !p->tw)
		return 0;
	if (fn == tw_timer_fn && (__u64)timer_tw(timer) == p->tw) {
		struct ct_tuple t;

		read_tuple(&timer_tw(timer)->__tw_common, &t, 0);
		if (tuple_eq(&t, &p->t)) {
			p->tw = 0; /* re-armed or expiring: not killed */
			__sync_fetch_and_add(&pending_cancels, -1);
			return 1;
		}
	}
	if (p->due)
		return 0;
	if (starting && fn == reqsk_timer_fn) {
		/*
		 * tcp_v4_rcv(): TCP_TW_SYN kills the timewait socket, then the
		 * listener queues a request socket for the same 4-tuple and
		 * arms its timer (reqsk_queue_hash_req()).
		 */
		struct request_sock *req = (void *)((unsigned long)timer -
				bpf_core_field_offset(struct request_sock, rsk_timer));
		struct ct_tuple t;

		read_tuple(&req->__req_common, &t, 0);
		if (tuple_eq(&t, &p->t))
			end = CT_TW_SYN;
	}
	settle_kill(p, end);
	return 0;
}

static __always_inline int handle_timer_start(struct timer_list *timer, __u64 fn, int direct)
{
	struct inet_timewait_sock *tw;
	struct tw_info *ti, zero = {};
	struct ct_tuple t;
	__u64 key, cookie, *c;
	__u32 zero_idx = 0;
	int tried;

	settle_pending(timer, fn, 1);
	if (fn != tw_timer_fn)
		return 0;
	tw = timer_tw(timer);
	/*
	 * inet_twsk_hashdance_schedule(): a new timewait socket, keyed by its
	 * cookie.  Inserted without a lookup first (a cache miss in a big
	 * table): a key already there is a re-arm, or an older timewait
	 * socket of the same full socket (reconnected after its close).
	 */
	cookie = BPF_CORE_READ(tw, __tw_common.skc_cookie.counter);
	zero.tw = (__u64)tw;
	if (direct && use_cookies)
		zero.conn_id = cookie; /* the connection's id, even if never joined */
	zero.start_ns = bpf_ktime_get_ns();
	zero.start_j = bpf_jiffies64();
	if (BPF_CORE_READ(tw, tw_substate) == S_FIN_WAIT2)
		zero.flags |= CT_F_TW_FIN_WAIT2;
	/*
	 * With entries keyed by address about, one of them may be this
	 * timewait socket's (its cookie was taken, and may be free now): look
	 * before inserting.
	 */
	key = cookie;
	tried = cookie && !tw_by_address && !tw_seeds_left; /* seeds: tw_state() adopts */
	if (!tried || bpf_map_update_elem(&tws, &key, &zero, BPF_NOEXIST)) {
		ti = tw_state(tw, &key);
		if (ti) {
			/* re-armed: in FIN_WAIT2 substate this is the peer's FIN */
			if ((ti->flags & CT_F_TW_FIN_WAIT2) && !ti->fin_ns &&
			    BPF_CORE_READ(tw, tw_substate) == S_TIME_WAIT)
				ti->fin_ns = zero.start_ns;
			return 0;
		}
		key = cookie;
		if (cookie && !tried && !bpf_map_update_elem(&tws, &key, &zero, BPF_NOEXIST))
			goto born;
		key = (__u64)tw;
		if (bpf_map_update_elem(&tws, &key, &zero, BPF_NOEXIST)) {
			/* counted at its full socket's CLOSE (tw_was_unkept()) */
			struct tw_unkept *u = bpf_map_lookup_elem(&tw_unkept, &zero_idx);

			if (u) {
				u->cookie = cookie;
				read_tuple(&tw->__tw_common, &u->t, 0);
			}
			return 0;
		}
		__sync_fetch_and_add(&tw_by_address, 1);
		c = bpf_map_lookup_elem(&tw_collided, &zero_idx);
		if (c && cookie) {
			c[0] = cookie;
			c[1] = key;
		}
	}
born:
	if (!(direct && use_cookies)) {
		read_tuple(&tw->__tw_common, &t, 0);
		bpf_map_update_elem(&tw_birth, &t, &key, BPF_ANY);
	}
	return 0;
}

static __always_inline int handle_timer_expire(struct timer_list *timer, __u64 fn)
{
	struct inet_timewait_sock *tw;
	struct tw_facts f;
	struct tw_info *ti;
	struct ct_tuple t;
	__u64 key;

	settle_pending(timer, fn, 0);
	if (fn != tw_timer_fn)
		return 0;
	tw = timer_tw(timer);
	ti = tw_state(tw, &key);
	if (!ti)
		return 0;
	read_tuple(&tw->__tw_common, &t, 0);
	/* tw_timer_handler(): a substate still FIN_WAIT2 means no FIN came */
	tw_facts_read(tw, &f);
	emit_tw_end(&f, ti, key, &t,
		    f.substate == S_FIN_WAIT2 ? CT_TW_FIN_WAIT2_TIMEOUT : CT_TW_EXPIRED, NULL,
		    bpf_ktime_get_ns());
	return 0;
}

static __always_inline int handle_timer_cancel(struct timer_list *timer, __u64 fn, int direct,
					       int bases)
{
	struct inet_timewait_sock *tw;
	struct pending_cancel *p;
	struct tw_facts f;
	struct tw_info *ti;
	struct ct_tuple t;
	struct sock *sk;
	__u64 key;
	__u32 zero = 0;
	int due;

	settle_pending(timer, fn, 0);
	if (fn != tw_timer_fn)
		return 0;
	tw = timer_tw(timer);
	ti = tw_state(tw, &key);
	if (!ti)
		return 0;
	read_tuple(&tw->__tw_common, &t, 0);

	/* cleanup_net() -> inet_twsk_purge(): the namespace is going away */
	if (netns_dying(BPF_CORE_READ(tw, __tw_common.skc_net.net))) {
		tw_facts_read(tw, &f);
		emit_tw_end(&f, ti, key, &t, CT_TW_NETNS_EXIT, NULL, bpf_ktime_get_ns());
		return 0;
	}
	/*
	 * __inet_check_established(): connect() took the 4-tuple over
	 * (tcp_twsk_unique()) and cancels the timer in the connecting
	 * thread, whose new socket already carries the same 4-tuple.
	 */
	sk = connecting_get(direct);
	if (sk) {
		struct ct_tuple ct;

		read_sk_tuple(sk, &ct, 0);
		if (BPF_CORE_READ(sk, __sk_common.skc_state) == S_SYN_SENT && tuple_eq(&ct, &t)) {
			tw_facts_read(tw, &f);
			emit_tw_end(&f, ti, key, &t, CT_TW_REUSED, sk, bpf_ktime_get_ns());
			return 0;
		}
	}
	due = bases ? timer_expiring(timer) : -1;
	if (due > 0)
		return 0; /* expire_timers(): timer_expire_entry follows */
	if (due < 0)
		due = bpf_jiffies64() >= BPF_CORE_READ(timer, expires);
	p = bpf_map_lookup_elem(&pending, &zero);
	if (!p)
		return 0;
	if (p->tw)
		settle_kill(p, CT_TW_RESET); /* a due one that did not expire */
	p->tw = (__u64)tw;
	p->key = key;
	p->ts = bpf_ktime_get_ns();
	p->due = due;
	tw_facts_read(tw, &p->f);
	p->t = t;
	__sync_fetch_and_add(&pending_cancels, 1);
	return 0;
}

/* ---- close() that does not close, and EADDRINUSE: syscall tracepoints ---- */

/* current->files->fdt->fd[fd] */
static __always_inline struct file *fd_file(long fd)
{
	struct task_struct *task;
	struct fdtable *fdt;
	struct file **fds, *f = NULL;
	unsigned int max;

	if (use_task_btf) {
		task = bpf_get_current_task_btf();
		fdt = task->files->fdt;
		max = fdt->max_fds;
		fds = fdt->fd;
	} else {
		task = (void *)bpf_get_current_task();
		fdt = BPF_CORE_READ(task, files, fdt);
		max = BPF_CORE_READ(fdt, max_fds);
		fds = BPF_CORE_READ(fdt, fd);
	}
	if (fd < 0 || fd >= max)
		return NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

/* the TCP socket behind an open file, if it is one */
static __always_inline struct sock *file_tcp_sock(struct file *f)
{
	struct socket *sock;
	struct sock *sk;
	__u16 family;

	if (!f || (BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(f, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return NULL;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	return family == AF_INET || family == AF_INET6 ? sk : NULL;
}

static __always_inline struct ct_record *syscall_record(__u8 kind, struct sock *sk, struct file *f,
							 long fd, const struct ct_tuple *t, int *ring)
{
	struct ct_sock *si = sock_state(sk, 0);
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct ct_record *r;

	/* with -p: the process's own calls, and calls on sockets it owns */
	if (!wanted(pid, t) && !(si && wanted(si->pid, t)))
		return NULL;
	r = record_new(kind, t, ring);
	if (!r)
		return NULL;
	set_owner_current(&r->pid, r->comm);
	r->conn_id = si ? si->conn_id : 0;
	r->fd = fd;
	r->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	r->ino = BPF_CORE_READ(f, f_inode, i_ino);
	return r;
}

/*
 * close(fd) drops one reference to the open file; the TCP close
 * (sock_close() -> __tcp_close()) only comes with the last one.  Other
 * references (fork() without CLOEXEC, dup(), SCM_RIGHTS) keep the socket,
 * and a listening port, alive.
 */
static __always_inline int close_enter(long fd)
{
	struct ct_record *r;
	struct file *f;
	struct sock *sk;
	struct ct_tuple t;
	long refs;
	int ring;

	/* the last reference (most calls) first: one read */
	f = fd_file(fd);
	refs = f ? file_refs(f, 0) : 0;
	if (refs <= 1)
		return 0;
	sk = file_tcp_sock(f);
	if (!sk)
		return 0;
	read_sk_tuple(sk, &t, 0);
	r = syscall_record(CT_REC_CLOSE_DEFERRED, sk, f, fd, &t, &ring);
	if (!r)
		return 0;
	r->refs = refs - 1;
	record_submit(r, ring);
	return 0;
}

/*
 * accept()/accept4() returned fd: the accepting process owns the socket
 * (until then it had its listener's owner: with pre-forked workers that
 * accept from their parent's listener, the parent).
 */
static __always_inline int accept_exit(long fd)
{
	struct file *f = fd_file(fd);
	struct sock *sk = file_tcp_sock(f);
	struct ct_sock *si;

	if (!sk)
		return 0;
	si = sock_state(sk, 0);
	if (!si)
		return 0;
	set_owner_current(&si->pid, si->comm);
	si->flags |= CT_F_ACCEPTED;
	si->ino = BPF_CORE_READ(f, f_inode, i_ino);
	return 0;
}

/* copy a user sockaddr's address and port into the tuple's local or remote end */
static __always_inline void user_sockaddr(const void *uaddr, struct ct_tuple *t, int local)
{
	__u16 family = 0, port = 0;
	__u8 *addr = local ? t->laddr : t->raddr;

	bpf_probe_read_user(&family, sizeof(family), uaddr);
	bpf_probe_read_user(&port, sizeof(port), uaddr + 2);
	if (family != AF_INET && family != AF_INET6)
		return;
	__builtin_memset(addr, 0, 16);
	if (family == AF_INET)
		bpf_probe_read_user(addr, 4, uaddr + 4); /* sin_addr */
	else
		bpf_probe_read_user(addr, 16, uaddr + 8); /* sin6_addr */
	t->family = family;
	if (local)
		t->lport = bpf_ntohs(port);
	else
		t->rport = bpf_ntohs(port);
}

/* bind(), listen() or connect() failed with EADDRINUSE; regs: the caller's saved registers */
static __always_inline int addr_in_use(__u8 which, struct pt_regs *regs)
{
	struct ct_record *r;
	struct file *f;
	struct sock *sk;
	struct ct_tuple t;
	long fd;
	int ring;

	fd = PT_REGS_PARM1_CORE(regs);
	f = fd_file(fd);
	sk = file_tcp_sock(f);
	if (!sk)
		return 0;
	read_sk_tuple(sk, &t, 0);
	/* the address asked for: the arguments are still in the saved registers */
	if (which == CT_SYS_BIND)
		user_sockaddr((void *)PT_REGS_PARM2_CORE(regs), &t, 1);
	else if (which == CT_SYS_CONNECT)
		user_sockaddr((void *)PT_REGS_PARM2_CORE(regs), &t, 0);
	r = syscall_record(CT_REC_BIND_CONFLICT, sk, f, fd, &t, &ring);
	if (!r)
		return 0;
	r->syscall = which;
	record_submit(r, ring);
	return 0;
}

/*
 * Two ways in.  The per-syscall tracepoints (CONFIG_FTRACE_SYSCALLS) run a
 * program only for close(), bind(), listen() and connect(): the others cost
 * a bit test in perf_syscall_enter().  The raw sys_enter/sys_exit ones run
 * for every system call; the loader picks them only when the former are
 * missing or the kernel lacks bpf_task_pt_regs() (Linux 5.15).
 */
SEC("tracepoint/syscalls/sys_enter_close")
int handle_close_enter(struct trace_event_raw_sys_enter *ctx)
{
	return close_enter(ctx->args[0]);
}

static __always_inline int syscall_exit(__u8 which, long ret)
{
	if (ret != -EADDRINUSE)
		return 0;
	return addr_in_use(which, (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()));
}

SEC("tracepoint/syscalls/sys_exit_bind")
int handle_bind_exit(struct trace_event_raw_sys_exit *ctx)
{
	return syscall_exit(CT_SYS_BIND, ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_listen")
int handle_listen_exit(struct trace_event_raw_sys_exit *ctx)
{
	return syscall_exit(CT_SYS_LISTEN, ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int handle_connect_exit(struct trace_event_raw_sys_exit *ctx)
{
	return syscall_exit(CT_SYS_CONNECT, ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int handle_accept_exit(struct trace_event_raw_sys_exit *ctx)
{
	return ctx->ret < 0 ? 0 : accept_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int handle_accept4_exit(struct trace_event_raw_sys_exit *ctx)
{
	return ctx->ret < 0 ? 0 : accept_exit(ctx->ret);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(handle_sys_enter, struct pt_regs *regs, long id)
{
	if (id != nr_close)
		return 0;
	return close_enter(PT_REGS_PARM1_CORE(regs));
}

SEC("tp_btf/sys_exit")
int BPF_PROG(handle_sys_exit, struct pt_regs *regs, long ret)
{
	long id;
	__u8 which;

	if (ret >= 0) {
		id = regs_syscall_nr(regs);
		return id == nr_accept || id == nr_accept4 ? accept_exit(ret) : 0;
	}
	if (ret != -EADDRINUSE)
		return 0;
	id = regs_syscall_nr(regs);
	which = id == nr_bind ? CT_SYS_BIND : id == nr_listen ? CT_SYS_LISTEN :
		id == nr_connect ? CT_SYS_CONNECT : 0;
	if (!which)
		return 0;
	return addr_in_use(which, regs);
}

/* ---- attachment: BTF tracepoints, and classic tracepoints as fallback ---- */

/* use_cookies: socket cookies, state in sock_slots */
/*
 * A program's work, with this CPU marked busy with it meanwhile (what).  A
 * run that finds itself marked busy is nested in its own run: a kernel
 * whose __bpf_trace_run() does not skip such runs.  It does the work and
 * tells its twin (BUSY_DONE(what)), which runs after it for the same event
 * (probes run in the order they were attached).
 */
#define BUSY_FIRST(what, call)                                          \
	({                                                              \
		__u32 *___b = busy_get();                               \
		if (___b) {                                             \
			/* BUSY_NESTED if nested, without a branch: one verifier path through call */ \
			__u32 ___n = ((*___b & (what)) >> __builtin_ctz(what)) * BUSY_NESTED; \
			*___b |= (what) | ___n;                         \
			call;                                           \
			if (___n)                                       \
				*___b = (*___b & ~BUSY_NESTED) | BUSY_DONE(what); \
			else                                            \
				*___b &= ~(what);                       \
		}                                                       \
		0;                                                      \
	})

/* the twin: the work only while the first is busy on this CPU and skipped */
#define BUSY_TWIN(what, call)                                           \
	({                                                              \
		__u32 *___b = busy_get();                               \
		if (___b && (*___b & BUSY_DONE(what))) {                \
			*___b &= ~BUSY_DONE(what);                      \
		} else if (___b && (*___b & (what))) {                  \
			*___b |= BUSY_NESTED;                           \
			call;                                           \
			*___b &= ~BUSY_NESTED;                          \
			__sync_fetch_and_add(&nested_runs, 1);          \
		}                                                       \
		0;                                                      \
	})

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_set_state_slots, struct sock *sk, int old, int new)
{
	return BUSY_FIRST(BUSY_SET_STATE, handle_set_state(sk, old, new, 1, 1));
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_set_state_slots_nested, struct sock *sk, int old, int new)
{
	return BUSY_TWIN(BUSY_SET_STATE, handle_set_state(sk, old, new, 1, 1));
}

/* before Linux 5.12, or --old-kernel: state in socks by address */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_set_state_btf, struct sock *sk, int old, int new)
{
	return BUSY_FIRST(BUSY_SET_STATE, handle_set_state(sk, old, new, 1, 0));
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_set_state_btf_nested, struct sock *sk, int old, int new)
{
	return BUSY_TWIN(BUSY_SET_STATE, handle_set_state(sk, old, new, 1, 0));
}

SEC("tracepoint/sock/inet_sock_set_state")
int handle_set_state_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	return handle_set_state((struct sock *)ctx->skaddr, ctx->oldstate, ctx->newstate, 0, 0);
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(handle_destroy_btf, struct sock *sk)
{
	return BUSY_FIRST(BUSY_DESTROY, handle_destroy(sk, 1));
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(handle_destroy_btf_nested, struct sock *sk)
{
	return BUSY_TWIN(BUSY_DESTROY, handle_destroy(sk, 1));
}

SEC("tracepoint/tcp/tcp_destroy_sock")
int handle_destroy_tp(struct trace_event_raw_tcp_event_sk *ctx)
{
	return handle_destroy((struct sock *)ctx->skaddr, 0);
}

SEC("tp_btf/tcp_send_reset")
int handle_send_reset_btf(__u64 *ctx)
{
	/* the reason argument exists from Linux 6.10 (enum sk_rst_reason) */
	int reason = bpf_core_type_exists(enum sk_rst_reason) ? (int)ctx[2] : -1;

	return handle_reset((struct sock *)ctx[0], 1, reason, 1);
}

SEC("tracepoint/tcp/tcp_send_reset")
int handle_send_reset_tp(void *ctx)
{
	return handle_reset((struct sock *)send_reset_ctx_sk(ctx), 1, send_reset_ctx_reason(ctx), 0);
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(handle_receive_reset_btf, struct sock *sk)
{
	return handle_reset(sk, 0, -1, 1);
}

SEC("tracepoint/tcp/tcp_receive_reset")
int handle_receive_reset_tp(struct trace_event_raw_tcp_event_sk *ctx)
{
	return handle_reset((struct sock *)ctx->skaddr, 0, -1, 0);
}

/* classic inet_sk_error_report carries no socket address: BTF only */
SEC("tp_btf/inet_sk_error_report")
int BPF_PROG(handle_error_report_btf, const struct sock *sk)
{
	return handle_error_report(sk, 1);
}

SEC("tp_btf/timer_start")
int BPF_PROG(handle_timer_start_btf, struct timer_list *timer)
{
	return BUSY_FIRST(BUSY_TIMER_START, handle_timer_start(timer, (__u64)timer->function, 1));
}

SEC("tp_btf/timer_start")
int BPF_PROG(handle_timer_start_btf_nested, struct timer_list *timer)
{
	return BUSY_TWIN(BUSY_TIMER_START, handle_timer_start(timer, (__u64)timer->function, 1));
}

SEC("tracepoint/timer/timer_start")
int handle_timer_start_tp(struct trace_event_raw_timer_start *ctx)
{
	return handle_timer_start(ctx->timer, (__u64)ctx->function, 0);
}

SEC("tp_btf/timer_expire_entry")
int BPF_PROG(handle_timer_expire_btf, struct timer_list *timer)
{
	return BUSY_FIRST(BUSY_TIMER_EXPIRE, handle_timer_expire(timer, (__u64)timer->function));
}

SEC("tp_btf/timer_expire_entry")
int BPF_PROG(handle_timer_expire_btf_nested, struct timer_list *timer)
{
	return BUSY_TWIN(BUSY_TIMER_EXPIRE, handle_timer_expire(timer, (__u64)timer->function));
}

SEC("tracepoint/timer/timer_expire_entry")
int handle_timer_expire_tp(struct trace_event_raw_timer_expire_entry *ctx)
{
	return handle_timer_expire(ctx->timer, (__u64)ctx->function);
}

SEC("tp_btf/timer_cancel")
int BPF_PROG(handle_timer_cancel_btf, struct timer_list *timer)
{
	return BUSY_FIRST(BUSY_TIMER_CANCEL, handle_timer_cancel(timer, (__u64)timer->function, 1, 0));
}

SEC("tp_btf/timer_cancel")
int BPF_PROG(handle_timer_cancel_btf_nested, struct timer_list *timer)
{
	return BUSY_TWIN(BUSY_TIMER_CANCEL, handle_timer_cancel(timer, (__u64)timer->function, 1, 0));
}

/* the same, reading the timer bases (where the verifier can resolve timer_bases) */
SEC("tp_btf/timer_cancel")
int BPF_PROG(handle_timer_cancel_bases, struct timer_list *timer)
{
	return BUSY_FIRST(BUSY_TIMER_CANCEL, handle_timer_cancel(timer, (__u64)timer->function, 1, 1));
}

SEC("tp_btf/timer_cancel")
int BPF_PROG(handle_timer_cancel_bases_nested, struct timer_list *timer)
{
	return BUSY_TWIN(BUSY_TIMER_CANCEL, handle_timer_cancel(timer, (__u64)timer->function, 1, 1));
}

SEC("tracepoint/timer/timer_cancel")
int handle_timer_cancel_tp(struct trace_event_raw_timer_class *ctx)
{
	struct timer_list *timer = ctx->timer;

	return handle_timer_cancel(timer, (__u64)BPF_CORE_READ(timer, function), 0, 0);
}

/*
 * Never attached: the loader runs it once on every CPU at exit
 * (BPF_PROG_TEST_RUN), after detaching the others, to settle what waits per
 * CPU for an event that will not come any more: a close waiting for an
 * abort's RST (rst_wait_settle()) and a timewait cancel waiting for the
 * next timer event (settle_pending(): a cancel still pending is a kill).
 */
SEC("raw_tp")
int flush_waiting(void *ctx)
{
	struct pending_cancel *p;
	__u32 zero = 0;

	rst_wait_settle(NULL, 0);
	if (!pending_cancels)
		return 0;
	p = bpf_map_lookup_elem(&pending, &zero);
	if (p && p->tw)
		settle_kill(p, CT_TW_RESET);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
