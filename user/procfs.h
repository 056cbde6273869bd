/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* What /proc says about a process's sockets (for -p and sockets opened before tracing). */
#ifndef CT_PROCFS_H
#define CT_PROCFS_H

#include <stdint.h>

#define PROCFS_MAX_SOCKETS 65536

/*
 * Socket inodes the process holds open (its /proc/PID/fd links
 * "socket:[INODE]").  Returns the count (at most max) or -errno.
 */
int proc_socket_inodes(uint32_t pid, uint64_t *inodes, int max);

/* network namespace inode of the process, 0 on error */
uint32_t proc_netns(uint32_t pid);


/*
 * Open a network namespace by inode number (for setns() or sock_diag in
 * it): through hint_pid if that process is in it, else a name under
 * /var/run/netns, else the first process found in it (a bounded /proc
 * scan).  Returns an O_RDONLY fd or -errno.
 */
int netns_open(uint32_t netns_ino, uint32_t hint_pid);

#endif
