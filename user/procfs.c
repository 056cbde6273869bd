// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

#define NETNS_SCAN_MAX 100000 /* processes looked at, at most */

static int open_if_netns(const char *path, uint32_t ino)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) || (uint32_t)st.st_ino != ino) {
		close(fd);
		return -1;
	}
	return fd;
}

static int scan_dir_for_netns(const char *dir, const char *suffix, uint32_t ino, int max)
{
	char path[512];
	struct dirent *de;
	DIR *d = opendir(dir);
	int fd = -1;

	if (!d)
		return -1;
	while (fd < 0 && max-- > 0 && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s%s", dir, de->d_name, suffix);
		fd = open_if_netns(path, ino);
	}
	closedir(d);
	return fd;
}

int netns_open(uint32_t netns_ino, uint32_t hint_pid)
{
	char path[64];
	int fd;

	if (hint_pid) {
		snprintf(path, sizeof(path), "/proc/%u/ns/net", hint_pid);
		fd = open_if_netns(path, netns_ino);
		if (fd >= 0)
			return fd;
	}
	fd = scan_dir_for_netns("/var/run/netns", "", netns_ino, NETNS_SCAN_MAX);
	if (fd < 0)
		fd = scan_dir_for_netns("/proc", "/ns/net", netns_ino, NETNS_SCAN_MAX);
	return fd >= 0 ? fd : -ENOENT;
}
