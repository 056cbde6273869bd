// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Kernel feature probes.  Distribution kernels backport BPF features, so
 * each is asked of the kernel itself: its BTF, tracefs, or a tiny program
 * the verifier accepts or refuses.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "kernel_features.h"
#include "sysinfo.h"

#define INSN(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })

static bool btf_has(const struct btf *btf, const char *name, int kind)
{
	return btf && btf__find_by_name_kind(btf, name, kind) > 0;
}

/* a program the verifier refused because of the helper itself, as libbpf's probes tell */
static bool helper_refused(const char *log)
{
	return strstr(log, "invalid func ") || strstr(log, "unknown func ") ||
	       strstr(log, "program of this type cannot use helper ");
}

/*
 * The helper is allowed in a tp_btf program on inet_sock_set_state (the
 * program type and attach point closetrace uses it from).
 * libbpf_probe_bpf_helper() cannot probe tracing programs (they need an
 * attach point), so: r1 = the socket argument, call, exit.  A refusal that
 * is not about the helper (an argument of another type) means allowed.
 */
static bool tracing_helper(const struct btf *btf, enum bpf_func_id helper)
{
	struct bpf_insn insns[] = {
		INSN(BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_1, BPF_REG_1, 0, 0),
		INSN(BPF_JMP | BPF_CALL, 0, 0, 0, helper),
		INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0),
		INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};
	char log[4096] = "";
	int attach, fd;

	attach = btf ? btf__find_by_name_kind(btf, "btf_trace_inet_sock_set_state", BTF_KIND_TYPEDEF) : -1;
	if (attach <= 0)
		return false;
	LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_RAW_TP,
		    .attach_btf_id = attach, .log_buf = log, .log_size = sizeof(log), .log_level = 1);
	fd = bpf_prog_load(BPF_PROG_TYPE_TRACING, NULL, "GPL", insns, sizeof(insns) / sizeof(insns[0]),
			   &opts);
	if (fd >= 0) {
		close(fd);
		return true;
	}
	return log[0] && !helper_refused(log);
}

/* BPF_CMPXCHG (Linux 5.12): older verifiers refuse it even in dead code */
static bool cmpxchg_insn(void)
{
	struct bpf_insn insns[] = {
		INSN(BPF_ST | BPF_MEM | BPF_DW, BPF_REG_10, 0, -8, 0),
		INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0),
		INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_1, 0, 0, 1),
		INSN(BPF_STX | BPF_DW | BPF_ATOMIC, BPF_REG_10, BPF_REG_1, -8, BPF_CMPXCHG),
		INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0),
		INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};
	int fd = bpf_prog_load(BPF_PROG_TYPE_SOCKET_FILTER, NULL, "GPL", insns,
			       sizeof(insns) / sizeof(insns[0]), NULL);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/*
 * A program may name the per-CPU variable timer_bases (a typed ksym:
 * ld_imm64 with BPF_PSEUDO_BTF_ID): it needs the variable in the kernel's
 * BTF (per-CPU variables are there since pahole 1.18: Debian's 6.1 on, not
 * 5.10) and its address in kallsyms, which lists data only with
 * CONFIG_KALLSYMS_ALL (check_pseudo_btf_id(): "ldimm64 failed to find the
 * address for kernel symbol").
 */
static bool timer_bases_var(const struct btf *btf)
{
	int id = btf ? btf__find_by_name_kind(btf, "timer_bases", BTF_KIND_VAR) : -1;
	struct bpf_insn insns[] = {
		INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_BTF_ID, 0, id),
		INSN(0, 0, 0, 0, 0),
		INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0),
		INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};
	int fd;

	if (id <= 0)
		return false;
	fd = bpf_prog_load(BPF_PROG_TYPE_SOCKET_FILTER, NULL, "GPL", insns,
			   sizeof(insns) / sizeof(insns[0]), NULL);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

void features_probe(struct ct_features *f)
{
	struct btf *btf = btf__load_vmlinux_btf();

	memset(f, 0, sizeof(*f));
	if (!btf || libbpf_get_error(btf))
		btf = NULL;
	f->btf = btf != NULL;
	f->btf_tracepoints = btf_has(btf, "btf_trace_inet_sock_set_state", BTF_KIND_TYPEDEF);
	f->error_report_tp = btf_has(btf, "btf_trace_inet_sk_error_report", BTF_KIND_TYPEDEF);
	f->syscall_tracepoints = ensure_tracefs() == 0 &&
				 access("/sys/kernel/tracing/events/syscalls/sys_enter_close", F_OK) == 0;
	if (f->btf_tracepoints) {
		f->socket_cookie = tracing_helper(btf, BPF_FUNC_get_socket_cookie);
		f->task_btf = tracing_helper(btf, BPF_FUNC_get_current_task_btf);
		f->task_storage = tracing_helper(btf, BPF_FUNC_task_storage_get) &&
				  libbpf_probe_bpf_map_type(BPF_MAP_TYPE_TASK_STORAGE, NULL) == 1;
		f->task_pt_regs = tracing_helper(btf, BPF_FUNC_task_pt_regs);
	}
	f->cmpxchg = cmpxchg_insn();
	/* kernel/bpf/memalloc.c (6.1): hash map elements allocated safely in any context */
	f->runtime_alloc = btf_has(btf, "bpf_mem_alloc", BTF_KIND_STRUCT);
	f->timer_bases = timer_bases_var(btf);
	btf__free(btf);
}

void features_print(const struct ct_features *f, FILE *out)
{
	const struct {
		const char *name;
		bool on;
	} rows[] = {
		{ "btf", f->btf },
		{ "btf_tracepoints", f->btf_tracepoints },
		{ "error_report_tracepoint", f->error_report_tp },
		{ "syscall_tracepoints", f->syscall_tracepoints },
		{ "socket_cookie", f->socket_cookie },
		{ "cmpxchg", f->cmpxchg },
		{ "task_btf", f->task_btf },
		{ "task_storage", f->task_storage },
		{ "task_pt_regs", f->task_pt_regs },
		{ "runtime_alloc", f->runtime_alloc },
		{ "timer_bases", f->timer_bases },
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		fprintf(out, "%s %s\n", rows[i].name, rows[i].on ? "yes" : "no");
}
