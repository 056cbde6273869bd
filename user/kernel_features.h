/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* (not features.h: that name is glibc's, and user/ is on the include path) */
/*
 * What the running kernel offers closetrace, each probed for the exact
 * thing used (a BTF type, a tracepoint, a helper allowed in the program
 * type that calls it, an instruction), never guessed from a version.
 */
#ifndef CT_KERNEL_FEATURES_H
#define CT_KERNEL_FEATURES_H

#include <stdbool.h>
#include <stdio.h>

struct ct_features {
	bool btf;		  /* /sys/kernel/btf/vmlinux */
	bool btf_tracepoints;	  /* tp_btf programs on inet_sock_set_state (5.5) */
	bool error_report_tp;	  /* the inet_sk_error_report tracepoint (5.14) */
	bool syscall_tracepoints; /* syscalls:sys_enter_close (CONFIG_FTRACE_SYSCALLS) */
	bool socket_cookie;	  /* bpf_get_socket_cookie() in tracing programs (5.12) */
	bool cmpxchg;		  /* BPF_CMPXCHG instructions (5.12) */
	bool task_btf;		  /* bpf_get_current_task_btf() (5.11) */
	bool task_storage;	  /* task local storage maps and helpers (5.11) */
	bool task_pt_regs;	  /* bpf_task_pt_regs() (5.15) */
	bool runtime_alloc;	  /* run-time allocated hash maps safe in any program: bpf_mem_alloc (6.1) */
	bool timer_bases;	  /* programs may read the per-CPU timer_bases (BTF + CONFIG_KALLSYMS_ALL) */
};

/* probe the running kernel; never fails (what cannot be probed is false) */
void features_probe(struct ct_features *f);

/* the probed facts by name, "name yes|no", one per line (closetrace features) */
void features_print(const struct ct_features *f, FILE *out);

#endif
