/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Facts about the running kernel the loader needs before load. */
#ifndef CT_SYSINFO_H
#define CT_SYSINFO_H

#include <stdint.h>

/* addresses of functions in /proc/kallsyms (0 if absent or hidden), in one pass; returns how many were found */
int kallsyms_lookup(const char *const *names, uint64_t *addrs, int n);
/* CONFIG_HZ from /proc/config.gz or /boot/config-$(uname -r), 0 if unknown */
unsigned int kernel_hz(void);
/* an integer sysctl such as "net/ipv4/tcp_max_tw_buckets"; -1 if unreadable */
long long read_sysctl(const char *name);
/* 0 if tracefs is (or could be) mounted at /sys/kernel/tracing */
int ensure_tracefs(void);

#endif
