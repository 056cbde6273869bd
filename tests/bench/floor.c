// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * floor: load and attach tests/bench/floor.bpf.c (the hooks closetrace uses,
 * with empty programs), say "Tracing" on stderr, and wait for SIGINT/SIGTERM.
 * Usage: floor [-d SECONDS] [-n]   (-n: without the syscall hooks, as --no-syscalls)
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <bpf/libbpf.h>
#include "floor.skel.h"

static volatile sig_atomic_t exiting;

static void on_signal(int sig)
{
	(void)sig;
	exiting = 1;
}

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, args);
}

/* as closetrace chooses: per-syscall tracepoints if tracefs has them; none with -n */
static void choose_syscall_hooks(struct floor_bpf *skel, bool none)
{
	const char *ev = "/sys/kernel/tracing/events/syscalls/sys_enter_close";
	bool each;

	if (access(ev, F_OK))
		mount("nodev", "/sys/kernel/tracing", "tracefs", 0, NULL);
	each = access(ev, F_OK) == 0;
	bpf_program__set_autoload(skel->progs.floor_close_enter, each && !none);
	bpf_program__set_autoload(skel->progs.floor_bind_exit, each && !none);
	bpf_program__set_autoload(skel->progs.floor_listen_exit, each && !none);
	bpf_program__set_autoload(skel->progs.floor_connect_exit, each && !none);
	bpf_program__set_autoload(skel->progs.floor_sys_enter, !each && !none);
	bpf_program__set_autoload(skel->progs.floor_sys_exit, !each && !none);
}

int main(int argc, char **argv)
{
	struct floor_bpf *skel;
	struct sigaction sa;
	sigset_t block, old;
	long seconds = 0;
	bool no_syscalls = false;
	int err, opt;

	while ((opt = getopt(argc, argv, "d:nh")) != -1) {
		switch (opt) {
		case 'd':
			seconds = strtol(optarg, NULL, 10);
			if (seconds <= 0) {
				fprintf(stderr, "floor: -d wants a positive number of seconds\n");
				return 2;
			}
			break;
		case 'n':
			no_syscalls = true;
			break;
		case 'h':
			printf("usage: floor [-d SECONDS] [-n]\n");
			return 0;
		default:
			fprintf(stderr, "usage: floor [-d SECONDS] [-n]\n");
			return 2;
		}
	}
	libbpf_set_print(quiet_print);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	/* signals are taken only inside sigsuspend: no lost wake-up */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGALRM);
	sigprocmask(SIG_BLOCK, &block, &old);

	skel = floor_bpf__open();
	if (!skel) {
		fprintf(stderr, "floor: failed to open BPF object: %s\n", strerror(errno));
		return 1;
	}
	choose_syscall_hooks(skel, no_syscalls);
	err = floor_bpf__load(skel);
	if (err) {
		fprintf(stderr, "floor: failed to load BPF object: %s\n", strerror(-err));
		floor_bpf__destroy(skel);
		return 1;
	}
	err = floor_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "floor: failed to attach: %s\n", strerror(-err));
		floor_bpf__destroy(skel);
		return 1;
	}
	fprintf(stderr, "Tracing (floor: empty programs). Hit Ctrl-C to end.\n");
	if (seconds)
		alarm((unsigned int)seconds);
	while (!exiting)
		sigsuspend(&old);
	floor_bpf__destroy(skel);
	return 0;
}
