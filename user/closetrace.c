// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * closetrace: trace the TCP close path.  The loader: checks, load, attach,
 * and the ring buffer loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "closetrace.h"
#include "closetrace.skel.h"
#include "explain.h"
#include "inventory.h"
#include "kernel_features.h"
#include "why_busy.h"
#include "options.h"
#include "output.h"
#include "pipeline.h"
#include "procfs.h"
#include "replay.h"
#include "sockdiag.h"
#include "sysinfo.h"
#include "trace_file.h"

#define POLL_MS 100
#define WAKEUP_BYTES (2 << 20) /* POLL_MS bounds the latency anyway */
/*
 * A consumer starved of CPU, or blocked in write() by dirty-page
 * throttling (--json at full churn writes ~25 MB/s), for up to a second
 * or two at full churn still loses nothing.  (8 MiB made the kernel side
 * ~0.3 us per connection cheaper, the ring staying in cache, but lost
 * records with --json here.)
 */
#define RINGBUF_BYTES (32u << 20)
#define PID_EXIT_GRACE_NS 500000000ULL
#define RECORD_FLUSH_NS 1000000000ULL /* a complete block on disk at least every second */
/* the inventory's share of the start-up (inventory.c), the rest after "Tracing" */
#define INVENTORY_BUDGET_MS 300
#define WATCH_TICK_NS 500000000ULL    /* --watch reports within half a second of the threshold */

static volatile sig_atomic_t exiting;

static void on_signal(int sig)
{
	exiting = 1;
}

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("closetrace: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static bool verbose;
static uint64_t phase_start; /* -v: start of the current start-up phase */

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && !verbose)
		return 0;
	if (level == LIBBPF_INFO && !verbose)
		return 0;
	return vfprintf(stderr, fmt, args);
}

static uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* -v: how long each start-up phase took (what delays "Tracing") */
static void phase_done(const char *what, uint64_t *since)
{
	uint64_t now = now_ns(CLOCK_MONOTONIC);

	if (verbose)
		fprintf(stderr, "closetrace: start-up: %s took %.1f ms\n", what, (now - *since) / 1e6);
	*since = now;
}

/* CAP_BPF + CAP_PERFMON (Linux 5.8+), or CAP_SYS_ADMIN */
static bool have_caps(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2] = {};
	uint64_t eff;

	if (syscall(SYS_capget, &h, d))
		return geteuid() == 0;
	eff = d[0].effective | ((uint64_t)d[1].effective << 32);
	if (eff & (1ULL << CAP_SYS_ADMIN))
		return true;
	return (eff & (1ULL << 39 /* CAP_BPF */)) && (eff & (1ULL << 38 /* CAP_PERFMON */));
}

/* a one-line note on what this kernel cannot give, once, at start */
static void kernel_lacks(const char *what, const char *consequence)
{
	fprintf(stderr, "closetrace: this kernel lacks %s: %s\n", what, consequence);
}

/*
 * Pick programs and code paths for what this kernel offers (kernel_features.c):
 * BTF tracepoints where there are, classic ones otherwise; socket cookies
 * and per-socket slots where tracing programs may ask for cookies and
 * BPF_CMPXCHG exists; the per-syscall tracepoints where bpf_task_pt_regs()
 * can read the caller's arguments, else the raw syscall hooks.
 * --old-kernel takes the paths of a kernel with none of the optional
 * features (as Linux 5.10 is), to test them anywhere.
 */
static int choose_programs(struct closetrace_bpf *skel, const struct ct_features *k, bool classic,
			   bool syscalls, bool old_kernel)
{
	struct closetrace_bpf__rodata *ro = skel->rodata;
	struct bpf_program *per_syscall[] = {
		skel->progs.handle_close_enter, skel->progs.handle_bind_exit,
		skel->progs.handle_listen_exit, skel->progs.handle_connect_exit,
		skel->progs.handle_accept_exit, skel->progs.handle_accept4_exit,
	};
	bool each_syscall;
	struct {
		struct bpf_program *btf, *tp;
	} pairs[] = {
		{ skel->progs.handle_set_state_btf, skel->progs.handle_set_state_tp },
		{ skel->progs.handle_destroy_btf, skel->progs.handle_destroy_tp },
		{ skel->progs.handle_send_reset_btf, skel->progs.handle_send_reset_tp },
		{ skel->progs.handle_receive_reset_btf, skel->progs.handle_receive_reset_tp },
		{ skel->progs.handle_error_report_btf, NULL },
		{ skel->progs.handle_timer_start_btf, skel->progs.handle_timer_start_tp },
		{ skel->progs.handle_timer_expire_btf, skel->progs.handle_timer_expire_tp },
		{ skel->progs.handle_timer_cancel_btf, skel->progs.handle_timer_cancel_tp },
	};

	if (!classic && !k->btf_tracepoints) {
		kernel_lacks("BTF tracepoints", "using classic tracepoints (no close()/bind() hooks)");
		classic = true;
	}
	if (classic) {
		int err = ensure_tracefs();

		if (err) {
			die("classic tracepoints need tracefs at /sys/kernel/tracing: %s", strerror(-err));
			return err;
		}
	}
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		bpf_program__set_autoload(pairs[i].btf, !classic);
		if (pairs[i].tp)
			bpf_program__set_autoload(pairs[i].tp, classic);
	}
	if (!classic && !k->error_report_tp) {
		kernel_lacks("the inet_sk_error_report tracepoint (Linux 5.14)",
			     "timeouts and resets are told from the socket's error at its close");
		bpf_program__set_autoload(skel->progs.handle_error_report_btf, false);
	}
	ro->use_cookies = !classic && !old_kernel && k->socket_cookie && k->cmpxchg;
	ro->use_task_btf = !classic && !old_kernel && k->task_btf;
	ro->use_task_storage = ro->use_task_btf && k->task_storage;
	if (!classic && !old_kernel && !ro->use_cookies)
		kernel_lacks("bpf_get_socket_cookie() in tracing programs or BPF_CMPXCHG (Linux 5.12)",
			     "connection ids are counters, not socket cookies");
	bpf_program__set_autoload(skel->progs.handle_set_state_slots, ro->use_cookies);
	/* timewait kills told from expiries at the cancel (timer_expiring()) */
	bpf_program__set_autoload(skel->progs.handle_timer_cancel_bases, !classic && k->timer_bases);
	if (!classic && k->timer_bases)
		bpf_program__set_autoload(skel->progs.handle_timer_cancel_btf, false);
	if (ro->use_cookies)
		bpf_program__set_autoload(skel->progs.handle_set_state_btf, false);
	bpf_map__set_autocreate(skel->maps.task_connecting, ro->use_task_storage);
	/*
	 * close() that does not close, EADDRINUSE: with BTF tracepoints only,
	 * through the per-syscall tracepoints where there are, else the raw
	 * ones that run for every system call.
	 */
	syscalls = syscalls && !classic;
	each_syscall = syscalls && ro->use_task_btf && k->task_pt_regs && k->syscall_tracepoints;
	if (syscalls && !old_kernel && !each_syscall)
		kernel_lacks(!k->syscall_tracepoints ? "syscall tracepoints (CONFIG_FTRACE_SYSCALLS)"
						     : "bpf_task_pt_regs() (Linux 5.15)",
			     "close()/bind()/listen()/connect() are hooked through sys_enter/sys_exit, "
			     "which costs every system call more");
	for (size_t i = 0; i < sizeof(per_syscall) / sizeof(per_syscall[0]); i++)
		bpf_program__set_autoload(per_syscall[i], each_syscall);
	bpf_program__set_autoload(skel->progs.handle_sys_enter, syscalls && !each_syscall);
	bpf_program__set_autoload(skel->progs.handle_sys_exit, syscalls && !each_syscall);
	/* each twin with the program it stands in for when the kernel skips it (busy, BPF side) */
	{
		struct bpf_program *firsts[] = {
			skel->progs.handle_set_state_slots, skel->progs.handle_set_state_btf,
			skel->progs.handle_destroy_btf, skel->progs.handle_timer_start_btf,
			skel->progs.handle_timer_expire_btf, skel->progs.handle_timer_cancel_btf,
			skel->progs.handle_timer_cancel_bases,
		};
		struct bpf_program *twins[] = {
			skel->progs.handle_set_state_slots_nested, skel->progs.handle_set_state_btf_nested,
			skel->progs.handle_destroy_btf_nested, skel->progs.handle_timer_start_btf_nested,
			skel->progs.handle_timer_expire_btf_nested,
			skel->progs.handle_timer_cancel_btf_nested,
			skel->progs.handle_timer_cancel_bases_nested,
		};

		for (size_t i = 0; i < sizeof(twins) / sizeof(twins[0]); i++)
			bpf_program__set_autoload(twins[i], bpf_program__autoload(firsts[i]));
	}
	if (verbose)
		fprintf(stderr, "closetrace: %s tracepoints%s%s\n", classic ? "classic" : "BTF",
			ro->use_cookies ? ", socket cookies" : "",
			!syscalls ? "" : each_syscall ? ", per-syscall hooks" : ", raw syscall hooks");
	return 0;
}

/*
 * With cookies: n sockets or more in sock_slots (a power of two of them,
 * preallocated) and socks for those whose slot is taken.  Else socks only.
 * Maps allocated at run time (on demand) only where the kernel allocates
 * safely from any program (Linux 6.1, bpf_mem_alloc): before, a classic
 * tracepoint program using one makes the verifier warn (WARN_ONCE in
 * check_map_prog_compatibility()) or, on PREEMPT_RT, refuse.
 */
static void size_tables(struct closetrace_bpf *skel, const struct ct_features *k, uint32_t n)
{
	uint32_t slots = 1;

	if (!k->runtime_alloc) {
		bpf_map__set_map_flags(skel->maps.tws, 0);
		/* preallocated: kept small (seeds beyond it are counted, not followed) */
		bpf_map__set_map_flags(skel->maps.tw_seeds, 0);
	} else {
		bpf_map__set_max_entries(skel->maps.tw_seeds, bpf_map__max_entries(skel->maps.tws));
	}
	bpf_map__set_max_entries(skel->maps.socks, n);
	if (!skel->rodata->use_cookies) {
		bpf_map__set_autocreate(skel->maps.sock_slots, false);
		return;
	}
	while (slots < n)
		slots <<= 1;
	skel->rodata->n_slots = slots;
	bpf_map__set_max_entries(skel->maps.sock_slots, slots);
	if (k->runtime_alloc)
		bpf_map__set_map_flags(skel->maps.socks, BPF_F_NO_PREALLOC);
}

static int configure(struct closetrace_bpf *skel, const struct ct_options *o)
{
	struct closetrace_bpf__rodata *ro = skel->rodata;
	long long tw_buckets = read_sysctl("net/ipv4/tcp_max_tw_buckets");
	unsigned int hz = kernel_hz();
	struct ct_features k;
	uint32_t tw_entries;
	int err;

	ro->filter_pid = o->pid;
	ro->filter_netns = o->netns;
	ro->filter_family = o->family;
	ro->emit_states = o->states;
	/* --summary alone aggregates in the kernel and sends no records */
	ro->emit_records = !o->summary || o->write_path;
	ro->aggregate = o->summary;
	ro->track_connect_fail = o->tw_reuse;
	ro->watch_tuples = o->watch > 0;
	for (int i = 0; i < o->n_lports; i++)
		ro->filter_lports[i] = o->lports[i];
	for (int i = 0; i < o->n_rports; i++)
		ro->filter_rports[i] = o->rports[i];
	ro->n_lports = o->n_lports;
	ro->n_rports = o->n_rports;
	ro->nr_close = SYS_close;
	ro->nr_bind = SYS_bind;
	ro->nr_listen = SYS_listen;
	ro->nr_connect = SYS_connect;
#ifdef SYS_accept /* not on every architecture (accept4 only) */
	ro->nr_accept = SYS_accept;
#endif
	ro->nr_accept4 = SYS_accept4;
	ro->wakeup_bytes = WAKEUP_BYTES;
	if (hz)
		ro->hz = hz;
	else if (verbose)
		fprintf(stderr, "closetrace: CONFIG_HZ unknown, assuming %u\n", ro->hz);

	/*
	 * Hold every timewait socket the kernel may keep, twice over
	 * (tcp_max_tw_buckets of this namespace; others may allow more:
	 * --max-timewait, and tw_map_full counts what did not fit).
	 */
	tw_entries = 262144;
	if (o->max_timewait)
		tw_entries = o->max_timewait;
	else if (tw_buckets > 0 && tw_buckets * 2 > tw_entries)
		tw_entries = tw_buckets * 2 > (1 << 24) ? (1 << 24) : (uint32_t)(tw_buckets * 2);
	bpf_map__set_max_entries(skel->maps.tws, tw_entries);
	bpf_map__set_max_entries(skel->maps.rb, RINGBUF_BYTES);
	features_probe(&k);
	phase_done("probing kernel features", &phase_start);
	err = choose_programs(skel, &k, o->classic_tp, !o->no_syscalls, o->old_kernel);
	if (err)
		return err;
	size_tables(skel, &k, o->max_sockets ? o->max_sockets : DEFAULT_MAX_SOCKETS);
	return 0;
}

/*
 * The timer functions' addresses, from /proc/kallsyms: formatting it is
 * tens of milliseconds of kernel time (hundreds under load), read in a
 * thread while the verifier runs.  The programs find them in .bss, set
 * between load and attach.
 */
struct ksyms_job {
	pthread_t thread;
	bool started;
	uint64_t addrs[2];
	uint64_t ns; /* how long it took */
};

static void *ksyms_read(void *arg)
{
	static const char *const timer_fns[] = { "tw_timer_handler", "reqsk_timer_handler" };
	struct ksyms_job *job = arg;
	uint64_t t0 = now_ns(CLOCK_MONOTONIC);

	kallsyms_lookup(timer_fns, job->addrs, 2);
	job->ns = now_ns(CLOCK_MONOTONIC) - t0;
	return NULL;
}

static void ksyms_start(struct ksyms_job *job)
{
	job->started = !pthread_create(&job->thread, NULL, ksyms_read, job);
	if (!job->started)
		ksyms_read(job);
}

static int ksyms_finish(struct ksyms_job *job, struct closetrace_bpf *skel)
{
	if (job->started)
		pthread_join(job->thread, NULL);
	job->started = false;
	if (verbose)
		fprintf(stderr, "closetrace: start-up: reading /proc/kallsyms took %.1f ms (meanwhile)\n",
			job->ns / 1e6);
	if (!job->addrs[0]) {
		die("tw_timer_handler not found in /proc/kallsyms (is kernel.kptr_restrict hiding it?)");
		return -ENOENT;
	}
	skel->bss->tw_timer_fn = job->addrs[0];
	skel->bss->reqsk_timer_fn = job->addrs[1];
	return 0;
}

/* -p: tell the kernel side which sockets the process already holds */
static void seed_target(struct closetrace_bpf *skel, uint32_t pid)
{
	static uint64_t inodes[PROCFS_MAX_SOCKETS];
	int n = proc_socket_inodes(pid, inodes, PROCFS_MAX_SOCKETS);
	struct ct_listener_key lk = { .netns = proc_netns(pid) };
	struct ct_owner owner = { .pid = pid };
	struct port_report rep = {};
	char path[64];
	int nsfd;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%u/comm", pid);
	f = fopen(path, "r");
	if (f) {
		if (fgets(owner.comm, sizeof(owner.comm), f))
			owner.comm[strcspn(owner.comm, "\n")] = '\0';
		fclose(f);
	}
	for (int i = 0; i < n; i++)
		bpf_map__update_elem(skel->maps.target_inodes, &inodes[i], sizeof(inodes[i]), &pid,
				     sizeof(pid), BPF_ANY);
	/* its listening sockets (sock_diag in its namespace): accepted children inherit */
	nsfd = netns_open(lk.netns, pid);
	if (nsfd < 0 || sockdiag_states(1u << TCP_LISTEN, nsfd, &rep)) {
		if (nsfd >= 0)
			close(nsfd);
		return;
	}
	close(nsfd);
	for (int j = 0; j < rep.n; j++) {
		for (int i = 0; i < n; i++) {
			if (rep.socks[j].inode != inodes[i])
				continue;
			lk.port = rep.socks[j].lport;
			bpf_map__update_elem(skel->maps.listeners, &lk, sizeof(lk), &owner, sizeof(owner),
					     BPF_ANY);
		}
	}
	port_report_free(&rep);
}

/*
 * Has the -p process exited?  A pidfd becomes readable at exit, zombie or
 * not; without pidfd_open (before Linux 5.3) fall back to kill(pid, 0).
 */
static bool process_gone(uint32_t pid, int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	if (pidfd >= 0)
		return poll(&p, 1, 0) > 0;
	return kill(pid, 0) && errno == ESRCH;
}

static void emit_explanation(void *ctx, const struct ct_record *r)
{
	pipeline_record(ctx, r);
}

/* records taken from the ring buffer (the kernel side keeps no shared counter) */
static uint64_t records_received;

/*
 * --watch: sockets already in CLOSE_WAIT / FIN_WAIT2 at start, in the
 * namespaces this run looks at (sock_diag sees one namespace at a time).
 */
static void seed_watch(struct pipeline *p, const struct ct_options *o)
{
	uint32_t own = proc_netns(getpid()), target = 0;
	int fd;

	if (o->pid)
		target = proc_netns(o->pid);
	else if (o->netns)
		target = o->netns;
	if (!target || target == own) {
		watch_seed(p->watch, -1, own, o->pid);
		watch_set_netns(p->watch, -1, own);
		return;
	}
	fd = netns_open(target, o->pid);
	if (fd < 0)
		return;
	watch_seed(p->watch, fd, target, o->pid);
	watch_set_netns(p->watch, fd, target); /* kept for every tick */
}

/*
 * --watch: the tws map and where its values (struct tw_info) keep what
 * --watch needs, read from the BPF object's BTF (the layout is the kernel
 * side's own).
 */
static void watch_timewait_layout(struct closetrace_bpf *skel, struct watch *w)
{
	struct watch_tw_layout l = { .fd = -1, .off_conn_id = -1, .off_start_ns = -1,
				     .off_fw2_ns = -1, .off_pid = -1, .off_comm = -1 };
	struct btf *btf = bpf_object__btf(skel->obj);
	const struct btf_member *m;
	const struct btf_type *t;
	int id;

	id = btf ? btf__find_by_name_kind(btf, "tw_info", BTF_KIND_STRUCT) : -1;
	t = id > 0 ? btf__type_by_id(btf, id) : NULL;
	if (!t)
		return;
	m = btf_members(t);
	for (int i = 0; i < btf_vlen(t); i++, m++) {
		const char *name = btf__name_by_offset(btf, m->name_off);
		int off = (int)(btf_member_bit_offset(t, i) / 8);

		if (!name)
			continue;
		if (!strcmp(name, "conn_id"))
			l.off_conn_id = off;
		else if (!strcmp(name, "start_ns"))
			l.off_start_ns = off;
		else if (!strcmp(name, "fw2_ns"))
			l.off_fw2_ns = off;
		else if (!strcmp(name, "pid"))
			l.off_pid = off;
		else if (!strcmp(name, "comm"))
			l.off_comm = off;
	}
	l.fd = bpf_map__fd(skel->maps.tws);
	l.value_size = bpf_map__value_size(skel->maps.tws);
	watch_set_timewait(w, &l);
}

/*
 * Sockets older than the tracer (inventory.c): listed once the programs are
 * attached, so that none falls between the two, and before "Tracing" (then
 * every socket is followed) as far as INVENTORY_BUDGET_MS allows; the
 * namespaces left are listed just after it, then the inventory is told.
 */
static void inventory_report(struct pipeline *p, const struct inventory *inv, uint64_t *sweep_at)
{
	if (verbose)
		fprintf(stderr, "closetrace: start-up: the inventory took %llu ms (%d timewait sockets handed over)\n",
			(unsigned long long)inv->ms, inv->seeded);
	p->out.preexisting = inv->timewait + inv->tw_fin_wait2 + inv->close_wait + inv->fin_wait2 +
			     inv->last_ack;
	p->out.preexisting_lost = inv->not_followed;
	/* TCP_TIMEWAIT_LEN more for a FIN_WAIT2 that gets its FIN, and a margin for the timer wheel */
	if (inv->seeded)
		*sweep_at = now_ns(CLOCK_MONOTONIC) +
			    (inv->max_expires_ms + SOCKDIAG_TIMEWAIT_LEN_MS + 5000) * 1000000ULL;
	if (p->out.preexisting || inv->netns_failed || verbose)
		inventory_print(inv);
}

static void take_inventory(struct closetrace_bpf *skel, const struct ct_options *o,
			   uint64_t attached_ns, struct inventory *inv)
{
	inventory_take(o, bpf_map__fd(skel->maps.tw_seeds), bpf_map__fd(skel->maps.tws),
		       bpf_map__value_size(skel->maps.tws), skel->rodata->use_cookies,
		       (uint64_t *)&skel->bss->tw_seeds_left, attached_ns, INVENTORY_BUDGET_MS, inv);
}

static int handle_record(void *ctx, void *data, size_t len)
{
	const struct ct_record *r = data;

	if (len < sizeof(struct ct_record))
		return 0;
	records_received++;
	pipeline_record(ctx, r);
	if (r->kind == CT_REC_CLOSE_DEFERRED)
		explain_close_deferred(r, emit_explanation, ctx);
	else if (r->kind == CT_REC_BIND_CONFLICT)
		explain_bind_conflict(r, emit_explanation, ctx);
	return 0;
}

static int load_summary(struct closetrace_bpf *skel, struct pipeline *p)
{
	int err = summary_load_kernel(p->sum, bpf_map__fd(skel->maps.summary),
				      bpf_map__fd(skel->maps.proc_counts),
				      bpf_map__fd(skel->maps.endpoint_counts));

	if (err)
		die("reading the summary maps: %s", strerror(-err));
	return err;
}

static int start_recording(struct pipeline *p, const struct ct_options *o, struct ct_file_header *h)
{
	struct recorder_opts ro = {
		.path = o->write_path,
		.mode = o->file_mode,
		.rotate_size = o->rotate_size,
		.rotate_count = o->rotate_count,
		.header = h,
	};
	int err;

	trace_header_init(h, p->out.mono_to_real_ns, o->argc, o->argv);
	err = recorder__open(&ro, &p->rec);
	if (err)
		die("cannot record to %s: %s", o->write_path, strerror(-err));
	return err;
}

/*
 * At exit, with the programs detached: settle, on every CPU, the records
 * that wait there for an event that will not come any more (flush_waiting
 * in the BPF object).  CPUs that are offline refuse the run; they hold none.
 */
static void flush_waiting(struct closetrace_bpf *skel)
{
	int fd = bpf_program__fd(skel->progs.flush_waiting), n = libbpf_num_possible_cpus();

	for (int cpu = 0; fd >= 0 && cpu < n; cpu++) {
		LIBBPF_OPTS(bpf_test_run_opts, run, .flags = BPF_F_TEST_RUN_ON_CPU, .cpu = cpu);

		if (bpf_prog_test_run_opts(fd, &run) && verbose)
			fprintf(stderr, "closetrace: settling CPU %d's waiting records: %s\n", cpu,
				strerror(errno));
	}
}

/*
 * Runs of our programs the kernel skipped: __bpf_trace_run() does not run a
 * BTF tracepoint program again on a CPU where it is already running (a
 * softirq firing the same tracepoint inside it), counting recursion_misses
 * (Linux 5.12+ reports the count; kernels that skip without counting report 0).
 * A program with a twin lost nothing when the twin did its work instead.
 */
static uint64_t prog_misses(struct closetrace_bpf *skel)
{
	struct bpf_program *prog;
	uint64_t n = 0;

	bpf_object__for_each_program(prog, skel->obj) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		int fd = bpf_program__fd(prog);

		/*
		 * A twin runs for every event and is skipped when one comes
		 * during its own short run, while its first is free: its misses
		 * lose nothing.  Its first's misses do, less those it handled.
		 */
		if (strstr(bpf_program__name(prog), "_nested"))
			continue;
		if (fd >= 0 && !bpf_obj_get_info_by_fd(fd, &info, &len))
			n += info.recursion_misses;
	}
	return n > skel->bss->nested_runs ? n - skel->bss->nested_runs : 0;
}

static void read_stats(struct closetrace_bpf *skel, struct ct_stats *s)
{
	const __u64 *st = skel->bss->stats;

	s->lost = st[CT_STAT_LOST];
	s->socks_full = st[CT_STAT_SOCKS_FULL];
	s->tw_full = st[CT_STAT_TW_FULL];
	s->records = records_received;
	s->missed = prog_misses(skel);
}

/* closetrace features: what this kernel offers closetrace, probed as at start */
static int features_main(int argc, char **argv)
{
	struct ct_features k;

	if (argc > 1) {
		die("usage: closetrace features");
		return 2;
	}
	if (!have_caps()) {
		die("must run as root (or with CAP_BPF and CAP_PERFMON)");
		return 1;
	}
	libbpf_set_print(libbpf_print);
	features_probe(&k);
	features_print(&k, stdout);
	return 0;
}

/* closetrace why-busy PORT [--json] [--netns-pid PID]: who holds a port, without tracing */
static int why_busy_main(int argc, char **argv)
{
	const char *port_arg = NULL;
	uint16_t port;
	bool json = false;
	char *end, path[64];
	long v, nspid = 0;
	struct why_busy wb = {};
	int nsfd = -1, err;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--netns-pid") && i + 1 < argc) {
			nspid = strtol(argv[++i], &end, 10);
			if (*end || nspid <= 0) {
				die("why-busy: invalid --netns-pid '%s'", argv[i]);
				return 2;
			}
		} else if (argv[i][0] != '-' && !port_arg) {
			port_arg = argv[i];
		} else {
			die("usage: closetrace why-busy PORT [--json] [--netns-pid PID]");
			return 2;
		}
	}
	if (!port_arg) {
		die("usage: closetrace why-busy PORT [--json] [--netns-pid PID]");
		return 2;
	}
	v = strtol(port_arg, &end, 10);
	if (*end || v < 1 || v > 65535) {
		die("why-busy: invalid port '%s' (1-65535)", port_arg);
		return 2;
	}
	port = (uint16_t)v;
	if (nspid) {
		snprintf(path, sizeof(path), "/proc/%ld/ns/net", nspid);
		nsfd = open(path, O_RDONLY | O_CLOEXEC);
		if (nsfd < 0) {
			die("why-busy: %s: %s", path, strerror(errno));
			return 1;
		}
	}
	err = why_busy_collect(port, nsfd, 0, &wb);
	if (nsfd >= 0)
		close(nsfd);
	if (err) {
		die("why-busy: asking the kernel (sock_diag) failed: %s", strerror(-err));
		return 1;
	}
	if (json) {
		why_busy_write_json(&wb, NULL, stdout);
		putchar('\n');
	} else
		why_busy_write_text(&wb, stdout);
	why_busy_free(&wb);
	return fflush(stdout) ? 1 : 0;
}

/* --watch: the sock_slots array, read in place (none on older kernels) */
static int map_slots(struct closetrace_bpf *skel, const struct ct_sock **slots, size_t *n)
{
	int fd = bpf_map__fd(skel->maps.sock_slots);
	void *m;

	if (fd < 0)
		return 0;
	*n = bpf_map__max_entries(skel->maps.sock_slots);
	m = mmap(NULL, *n * sizeof(**slots), PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	*slots = m;
	return 0;
}

int main(int argc, char **argv)
{
	struct closetrace_bpf *skel = NULL;
	struct ring_buffer *rb = NULL;
	struct ct_options opts;
	struct pipeline p = {};
	struct ct_file_header header;
	struct ct_stats stats = {};
	uint64_t start, deadline = 0, pid_gone_at = 0, next_flush, next_summary = 0, next_watch = 0;
	const struct ct_sock *slots = NULL;
	size_t n_slots = 0;
	int err, pidfd = -1;
	uint64_t t_main = now_ns(CLOCK_MONOTONIC), attached_ns = 0;
	struct inventory inv;
	struct ksyms_job ksyms = {};
	uint64_t sweep_at = 0;

	if (argc > 1 && !strcmp(argv[1], "why-busy"))
		return why_busy_main(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "features"))
		return features_main(argc - 1, argv + 1);
	err = options_parse(argc, argv, &opts);
	if (err)
		return err < 0 ? 2 : 0;
	if (opts.read_path)
		return replay_run(&opts);
	verbose = opts.verbose;
	libbpf_set_print(libbpf_print);

	if (!have_caps()) {
		die("must run as root (or with CAP_BPF and CAP_PERFMON)");
		return 1;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		die("kernel BTF not available (/sys/kernel/btf/vmlinux): needs Linux 5.8+ with CONFIG_DEBUG_INFO_BTF=y");
		return 1;
	}
	if (opts.pid) {
		pidfd = syscall(SYS_pidfd_open, opts.pid, 0);
		if ((pidfd < 0 && errno == ESRCH) || process_gone(opts.pid, pidfd)) {
			die("process %u does not exist", opts.pid);
			return 1;
		}
	}

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);

	/* records show when not only recording, and not in the aggregate modes */
	err = pipeline_init(&p, &opts,
			    (!opts.write_path || opts.print) && !opts.summary && !opts.tw_reuse, false,
			    (int64_t)(now_ns(CLOCK_REALTIME) - now_ns(CLOCK_MONOTONIC)));
	if (err) {
		die("out of memory");
		goto cleanup;
	}
	/* stdout carries the recording: summaries and stats go to stderr */
	if (opts.write_path && !strcmp(opts.write_path, "-"))
		p.out.out = stderr;

	phase_start = now_ns(CLOCK_MONOTONIC);
	ksyms_start(&ksyms);
	skel = closetrace_bpf__open();
	if (!skel) {
		err = -errno;
		die("failed to open BPF object: %s", strerror(errno));
		goto cleanup;
	}
	phase_done("opening the BPF object", &phase_start);
	err = configure(skel, &opts);
	if (err)
		goto cleanup;
	err = closetrace_bpf__load(skel);
	if (err) {
		die("failed to load BPF programs: %s (run with -v for the verifier log)", strerror(-err));
		goto cleanup;
	}
	phase_done("creating maps and loading programs (verifier)", &phase_start);
	err = ksyms_finish(&ksyms, skel);
	if (err)
		goto cleanup;
	err = closetrace_bpf__attach(skel);
	if (err) {
		die("failed to attach BPF programs: %s", strerror(-err));
		goto cleanup;
	}
	phase_done("attaching", &phase_start);
	attached_ns = phase_start;
	if (opts.pid)
		seed_target(skel, opts.pid);
	if (opts.write_path) {
		err = start_recording(&p, &opts, &header);
		if (err)
			goto cleanup;
	}

	rb = ring_buffer__new(bpf_map__fd(skel->maps.rb), handle_record, &p, NULL);
	if (!rb) {
		err = -errno;
		die("failed to create ring buffer: %s", strerror(errno));
		goto cleanup;
	}

	if (p.print)
		output_header(&p.out);
	fflush(stdout);
	take_inventory(skel, &opts, attached_ns, &inv);
	fprintf(stderr, "Tracing TCP closes%s. Hit Ctrl-C to end.\n", opts.pid ? " of one process" : "");
	p.out.start_ms = (int64_t)(now_ns(CLOCK_MONOTONIC) - t_main) / 1000000;
	if (!p.out.start_ms)
		p.out.start_ms = 1; /* 0 means "not counted" (older recordings) */
	inventory_finish(&inv);
	inventory_report(&p, &inv, &sweep_at);

	start = now_ns(CLOCK_MONOTONIC);
	next_flush = start + RECORD_FLUSH_NS;
	if (opts.watch) {
		p.watch = watch_new((uint64_t)(opts.watch * 1e9), start, emit_explanation, &p);
		if (!p.watch) {
			err = -ENOMEM;
			die("out of memory");
			goto cleanup;
		}
		err = map_slots(skel, &slots, &n_slots);
		if (err) {
			die("cannot map the socket table: %s", strerror(-err));
			goto cleanup;
		}
		next_watch = start;
		watch_timewait_layout(skel, p.watch);
		watch_set_options(p.watch, &opts);
		seed_watch(&p, &opts);
	}
	if (opts.duration)
		deadline = start + (uint64_t)(opts.duration * 1e9);
	if (opts.interval)
		next_summary = start + (uint64_t)(opts.interval * 1e9);
	while (!exiting) {
		uint64_t now;

		/*
		 * The kernel side skips wake-ups until WAKEUP_BYTES are queued,
		 * so a quiet poll still has records to collect: consume after
		 * every timeout (at most POLL_MS of latency).
		 */
		err = ring_buffer__poll(rb, POLL_MS);
		if (err == 0)
			err = ring_buffer__consume(rb);
		if (err == -EINTR) {
			err = 0;
			break;
		}
		if (err < 0) {
			die("ring buffer poll failed: %s", strerror(-err));
			break;
		}
		err = 0;
		now = now_ns(CLOCK_MONOTONIC);
		if (p.rec && !p.rec_err && now >= next_flush) {
			p.rec_err = recorder__flush(p.rec);
			next_flush = now + RECORD_FLUSH_NS;
		}
		if (p.rec_err) {
			die("recording to %s stopped: %s", recorder__path(p.rec), strerror(-p.rec_err));
			err = p.rec_err;
			break;
		}
		if (sweep_at && now >= sweep_at) {
			p.out.preexisting_lost += inventory_sweep(bpf_map__fd(skel->maps.tw_seeds),
								 (uint64_t *)&skel->bss->tw_seeds_left);
			sweep_at = 0;
		}
		if (next_watch && now >= next_watch) {
			watch_tick(p.watch, bpf_map__fd(skel->maps.socks), slots, n_slots, now);
			next_watch = now + WATCH_TICK_NS;
		}
		if (next_summary && now >= next_summary) {
			err = load_summary(skel, &p);
			if (err)
				break;
			summary_print(p.sum, p.out.out, p.out.json, p.top);
			next_summary += (uint64_t)(opts.interval * 1e9);
		}
		if (fflush(stdout) || ferror(stdout)) {
			die("write error on output: %s", strerror(errno));
			err = -EIO;
			break;
		}
		if (deadline && now >= deadline)
			break;
		if (opts.pid && !pid_gone_at && process_gone(opts.pid, pidfd)) {
			fprintf(stderr, "closetrace: process %u exited; stopping\n", opts.pid);
			pid_gone_at = now;
		}
		/* let the closes that the exit caused arrive first */
		if (pid_gone_at && now - pid_gone_at >= PID_EXIT_GRACE_NS)
			break;
	}
	if (err)
		goto cleanup;
	closetrace_bpf__detach(skel);
	flush_waiting(skel);
	ring_buffer__consume(rb);

	read_stats(skel, &stats);
	stats.startup_ms = p.out.start_ms;
	stats.preexisting = p.out.preexisting;
	stats.preexisting_untracked = p.out.preexisting_lost;
	if (p.rec) {
		err = p.rec_err ? p.rec_err : recorder__write_stats(p.rec, &stats);
		if (err) {
			die("recording to %s stopped: %s", recorder__path(p.rec), strerror(-err));
			goto cleanup;
		}
	}
	if (p.sum) {
		err = load_summary(skel, &p);
		if (err)
			goto cleanup;
	}
	pipeline_finish(&p, &stats);
	if (fflush(stdout) || ferror(stdout)) {
		die("write error on output: %s", strerror(errno));
		err = -EIO;
	}

cleanup:
	if (ksyms.started)
		pthread_join(ksyms.thread, NULL);
	if (p.rec) {
		int cerr = recorder__close(p.rec);

		if (cerr && !err) {
			die("closing %s: %s", opts.write_path, strerror(-cerr));
			err = cerr;
		}
	}
	pipeline_free(&p);
	if (slots)
		munmap((void *)slots, n_slots * sizeof(*slots));
	ring_buffer__free(rb);
	closetrace_bpf__destroy(skel);
	if (pidfd >= 0)
		close(pidfd);
	return err ? 1 : 0;
}
