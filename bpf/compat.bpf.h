/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Kernel differences, each resolved with CO-RE at load time.
 */
#ifndef CLOSETRACE_COMPAT_BPF_H
#define CLOSETRACE_COMPAT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>

/*
 * What this kernel allows, probed by the loader (user/kernel_features.c)
 * and set before load; the code for a missing feature is never run.
 *
 * use_cookies: socket cookies as connection ids and timewait keys, and
 * per-socket state in sock_slots.  Needs bpf_get_socket_cookie() on BTF
 * socket pointers in tracing programs (Linux 5.12, bpf_get_socket_ptr_cookie
 * _proto) and BPF_CMPXCHG (5.12); the compare-and-swap lives only in
 * handle_set_state_slots, loaded only then (older verifiers refuse the
 * instruction even in dead code).  Else counters, and state in socks by
 * address.
 */
const volatile __u8 use_cookies = 0;
/* bpf_get_current_task_btf() (Linux 5.11): direct reads of the current task */
const volatile __u8 use_task_btf = 0;
/* task local storage from tracing programs (Linux 5.11): the connect() in flight */
const volatile __u8 use_task_storage = 0;

/*
 * Read a field of a kernel object: a direct load where the verifier knows
 * the pointer's BTF type (tp_btf arguments and pointers read from them: the
 * load becomes a fault-safe PROBE_MEM load), a CO-RE probe read helper call
 * otherwise (classic tracepoints, pointers from maps).  direct is a
 * constant at every call site, so each program keeps one of the two.
 */
#define RD(direct, p, field)                                                    \
	({                                                                      \
		typeof(p) ___p = (p);                                           \
		(direct) ? ___p->field : BPF_CORE_READ(___p, field);            \
	})

/*
 * The network namespace's reference count: struct net.count in older
 * kernels (Debian's 5.10), ns_common.count later (6.1), renamed
 * ns_common.__ns_ref in 6.18; all are refcount_t.  It is zero while cleanup_net() tears the
 * namespace down, which is when inet_twsk_purge() cancels every timewait
 * timer of that namespace.
 */
struct ns_common___old {
	refcount_t count;
} __attribute__((preserve_access_index));

struct net___old {
	refcount_t count;
} __attribute__((preserve_access_index));

static __always_inline int netns_dying(const struct net *net)
{
	const struct ns_common *ns = &net->ns;

	if (bpf_core_field_exists(ns->__ns_ref))
		return BPF_CORE_READ(ns, __ns_ref.refs.counter) == 0;
	if (bpf_core_field_exists(((struct ns_common___old *)ns)->count))
		return BPF_CORE_READ((struct ns_common___old *)ns, count.refs.counter) == 0;
	if (bpf_core_field_exists(((struct net___old *)net)->count))
		return BPF_CORE_READ((struct net___old *)net, count.refs.counter) == 0;
	return 0;
}

/*
 * Classic tracepoint layout of tcp:tcp_send_reset.  Linux 6.10 gave the
 * event its own class (with a reset reason); before, it was a
 * tcp_event_sk_skb.  Both carry skaddr.
 */
struct trace_event_raw_tcp_event_sk_skb___old {
	const void *skaddr;
} __attribute__((preserve_access_index));

static __always_inline const void *send_reset_ctx_sk(void *ctx)
{
	if (bpf_core_type_exists(struct trace_event_raw_tcp_send_reset))
		return BPF_CORE_READ((struct trace_event_raw_tcp_send_reset *)ctx, skaddr);
	return BPF_CORE_READ((struct trace_event_raw_tcp_event_sk_skb___old *)ctx, skaddr);
}

static __always_inline int send_reset_ctx_reason(void *ctx)
{
	if (bpf_core_type_exists(struct trace_event_raw_tcp_send_reset))
		return BPF_CORE_READ((struct trace_event_raw_tcp_send_reset *)ctx, reason);
	return -1;
}

/*
 * References to an open file.  Linux 6.13 replaced file.f_count
 * (atomic_long_t, 1 = one reference) by file_ref_t f_ref, which counts
 * from 0 (0 = one reference) and is negative (FILE_REF_DEAD) once the last
 * reference went and __fput() runs.  Returns the number of references, 0
 * when the file is being released.
 */
struct file___old {
	atomic_long_t f_count;
} __attribute__((preserve_access_index));

static __always_inline long file_refs(struct file *f, int direct)
{
	long v;

	if (bpf_core_field_exists(f->f_ref)) {
		v = RD(direct, f, f_ref.refcnt.counter);
		return v < 0 ? 0 : v + 1;
	}
	v = RD(direct, (struct file___old *)f, f_count.counter);
	return v < 0 ? 0 : v;
}

/*
 * The syscall number in the pt_regs a syscall tracepoint gets: orig_ax on
 * x86, syscallno on arm64.
 */
struct pt_regs___x86 {
	unsigned long orig_ax;
} __attribute__((preserve_access_index));

struct pt_regs___arm64 {
	int syscallno;
} __attribute__((preserve_access_index));

static __always_inline long regs_syscall_nr(struct pt_regs *regs)
{
	if (bpf_core_field_exists(((struct pt_regs___x86 *)regs)->orig_ax))
		return BPF_CORE_READ((struct pt_regs___x86 *)regs, orig_ax);
	if (bpf_core_field_exists(((struct pt_regs___arm64 *)regs)->syscallno))
		return BPF_CORE_READ((struct pt_regs___arm64 *)regs, syscallno);
	return -1;
}

/*
 * Is this timer_cancel the detach of a timer about to run?  expire_timers()
 * (kernel/time/timer.c) sets base->running_timer before detach_timer()
 * emits timer_cancel, then drops the base lock with interrupts on before
 * call_timer_fn() emits timer_expire_entry: another timer event can come in
 * between, so "the next timer event on this CPU" cannot tell an expiry from
 * a kill.  The per-CPU timer_bases are read through their BTF (Debian's 6.1
 * and later describe per-CPU variables; 5.10's BTF does not: there the
 * caller guesses from the expiry time).  The timer's base belongs to the CPU
 * in its flags (TIMER_CPUMASK), which is not this one when a timer of an
 * idle CPU is run elsewhere (6.9+ timer migration).  Base 0 holds pinned
 * and standard timers, base 1 the global (6.9+) or deferrable ones; every
 * kernel with NO_HZ_COMMON has both.
 * Returns 1 if expiring, 0 if not, -1 if this kernel cannot say.
 */
extern const struct timer_base timer_bases[] __ksym __weak;

#define TIMER_CPUMASK 0x0003FFFF /* include/linux/timer.h */

static __always_inline int timer_expiring(struct timer_list *timer)
{
	__u32 off = bpf_core_field_offset(struct timer_base, running_timer);
	__u32 size = bpf_core_type_size(struct timer_base);
	__u32 cpu = BPF_CORE_READ(timer, flags) & TIMER_CPUMASK;
	const void *base;
	void *running;

	if (!&timer_bases)
		return -1;
	base = bpf_per_cpu_ptr(timer_bases, cpu);
	if (!base)
		return -1;
	for (int i = 0; i < 2; i++) {
		if (bpf_probe_read_kernel(&running, sizeof(running), base + i * size + off))
			return -1;
		if (running == timer)
			return 1;
	}
	return 0;
}

/*
 * Whether the namespace's timewait table is full, as inet_twsk_alloc()
 * decides it for tcp_time_wait(): tcp_max_tw_buckets timewait sockets
 * exist.  Linux 5.17 replaced tcp_death_row.tw_count (atomic_t, the count)
 * by tw_refcount (refcount_t, the count plus one).
 */
struct inet_timewait_death_row___old {
	atomic_t tw_count;
} __attribute__((preserve_access_index));

static __always_inline int tw_table_full(struct sock *sk)
{
	struct net *net = BPF_CORE_READ(sk, __sk_common.skc_net.net);
	struct inet_timewait_death_row *dr = &net->ipv4.tcp_death_row;
	int max = BPF_CORE_READ(dr, sysctl_max_tw_buckets);
	int n;

	if (bpf_core_field_exists(dr->tw_refcount))
		n = BPF_CORE_READ(dr, tw_refcount.refs.counter) - 1;
	else
		n = BPF_CORE_READ((struct inet_timewait_death_row___old *)dr, tw_count.counter);
	return n >= max;
}

#endif /* CLOSETRACE_COMPAT_BPF_H */
