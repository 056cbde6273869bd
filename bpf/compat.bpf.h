/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Kernel differences, each resolved with CO-RE at load time.
 */
#ifndef CLOSETRACE_COMPAT_BPF_H
#define CLOSETRACE_COMPAT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>

/*
 * The network namespace's reference count.  Linux 6.18 renamed
 * ns_common.count to __ns_ref; both are refcount_t.  It is zero while
 * cleanup_net() tears the namespace down, which is when inet_twsk_purge()
 * cancels every timewait timer of that namespace.
 */
struct ns_common___old {
	refcount_t count;
} __attribute__((preserve_access_index));

static __always_inline int netns_dying(const struct net *net)
{
	const struct ns_common *ns = &net->ns;

	if (bpf_core_field_exists(ns->__ns_ref))
		return BPF_CORE_READ(ns, __ns_ref.refs.counter) == 0;
	if (bpf_core_field_exists(((struct ns_common___old *)ns)->count))
		return BPF_CORE_READ((struct ns_common___old *)ns, count.refs.counter) == 0;
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

#endif /* CLOSETRACE_COMPAT_BPF_H */
