// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The benchmark's floor: every hook closetrace attaches, with empty programs.
 * What this costs is the price of being attached at all (trampoline entry and
 * exit per event); closetrace's overhead above it is its own work.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tp_btf/inet_sock_set_state")
int floor_set_state(void *ctx)
{
	return 0;
}

SEC("tp_btf/tcp_destroy_sock")
int floor_destroy_sock(void *ctx)
{
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int floor_send_reset(void *ctx)
{
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int floor_receive_reset(void *ctx)
{
	return 0;
}

SEC("tp_btf/inet_sk_error_report")
int floor_error_report(void *ctx)
{
	return 0;
}

SEC("tp_btf/timer_start")
int floor_timer_start(void *ctx)
{
	return 0;
}

SEC("tp_btf/timer_expire_entry")
int floor_timer_expire(void *ctx)
{
	return 0;
}

SEC("tp_btf/timer_cancel")
int floor_timer_cancel(void *ctx)
{
	return 0;
}

/* closetrace's per-syscall hooks (the raw sys_enter/sys_exit ones when these are missing) */
SEC("tracepoint/syscalls/sys_enter_close")
int floor_close_enter(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_bind")
int floor_bind_exit(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_listen")
int floor_listen_exit(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int floor_connect_exit(void *ctx)
{
	return 0;
}

SEC("tp_btf/sys_enter")
int floor_sys_enter(void *ctx)
{
	return 0;
}

SEC("tp_btf/sys_exit")
int floor_sys_exit(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
