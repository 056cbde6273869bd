// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "procfs.h"

int proc_socket_inodes(uint32_t pid, uint64_t *inodes, int max)
{
	char path[64], link[64];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%u/fd", pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while (n < max && (de = readdir(d))) {
		char fdpath[384];
		ssize_t len;
		unsigned long long ino;

		if (de->d_name[0] == '.')
			continue;
		snprintf(fdpath, sizeof(fdpath), "%s/%s", path, de->d_name);
		/* the fd may be closed meanwhile: skip what we cannot read */
		len = readlink(fdpath, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = '\0';
		if (sscanf(link, "socket:[%llu]", &ino) == 1)
			inodes[n++] = ino;
	}
	closedir(d);
	return n;
}

uint32_t proc_netns(uint32_t pid)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%u/ns/net", pid);
	if (stat(path, &st))
		return 0;
	return (uint32_t)st.st_ino;
}

static int scan_tcp_table(const char *path, struct proc_listener *out, int n, int max)
{
	char line[512];
	FILE *f = fopen(path, "r");

	if (!f)
		return n;
	/* sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode */
	while (n < max && fgets(line, sizeof(line), f)) {
		char local[64];
		unsigned int st, port;
		unsigned long long inode;
		char *colon;

		if (sscanf(line, " %*d: %63s %*s %x %*s %*s %*s %*u %*d %llu", local, &st, &inode) != 3)
			continue;
		if (st != 0x0a) /* TCP_LISTEN */
			continue;
		colon = strrchr(local, ':');
		if (!colon || sscanf(colon + 1, "%x", &port) != 1)
			continue;
		out[n].port = (uint16_t)port;
		out[n].inode = inode;
		n++;
	}
	fclose(f);
	return n;
}

int proc_tcp_listeners(uint32_t pid, struct proc_listener *out, int max)
{
	char path[64];
	int n;

	snprintf(path, sizeof(path), "/proc/%u/net/tcp", pid);
	if (access(path, R_OK))
		return -errno;
	n = scan_tcp_table(path, out, 0, max);
	snprintf(path, sizeof(path), "/proc/%u/net/tcp6", pid);
	return scan_tcp_table(path, out, n, max);
}
