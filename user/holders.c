// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Which processes hold given socket inodes: readlink() of every
 * /proc/PID/fd/N, looking for "socket:[INODE]", within a time and fd budget.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "holders.h"

/* look at the clock once per this many fd links */
#define CLOCK_EVERY 64

struct scan {
	const uint64_t *inodes; /* sorted, unique */
	int n_inodes;
	int max_results;
	uint64_t max_fds;
	uint64_t deadline_ns;
	int cap;
	struct holder_scan *out;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_holder(const void *a, const void *b)
{
	const struct holder *x = a, *y = b;

	if (x->inode != y->inode)
		return x->inode < y->inode ? -1 : 1;
	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return (x->fd > y->fd) - (x->fd < y->fd);
}

/* sorted copy without repeats and zeroes (inode 0: no file); the count or -ENOMEM */
static int sorted_inodes(const uint64_t *in, int n, uint64_t **sorted)
{
	uint64_t *s;
	int m = 0;

	*sorted = NULL;
	if (n <= 0)
		return 0;
	s = malloc(n * sizeof(*s));
	if (!s)
		return -ENOMEM;
	memcpy(s, in, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_u64);
	for (int i = 0; i < n; i++)
		if (s[i] && (m == 0 || s[m - 1] != s[i]))
			s[m++] = s[i];
	*sorted = s;
	return m;
}

static bool stop(struct scan *sc, const char *why)
{
	sc->out->gave_up = true;
	sc->out->why = why;
	return true;
}

/* checked before each fd link is read */
static bool over_budget(struct scan *sc)
{
	struct holder_scan *o = sc->out;

	if (o->fds_read >= sc->max_fds)
		return stop(sc, "fd limit");
	if (o->fds_read % CLOCK_EVERY == 0 && now_ns() >= sc->deadline_ns)
		return stop(sc, "time budget");
	return false;
}

/* /proc/PID/comm without its newline; false when the process is gone */
static bool read_comm(int proc_fd, char comm[16])
{
	char buf[32];
	ssize_t n;
	int fd = openat(proc_fd, "comm", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	do {
		n = read(fd, buf, sizeof(buf) - 1);
	} while (n < 0 && errno == EINTR);
	close(fd);
	if (n <= 0)
		return false;
	if (buf[n - 1] == '\n')
		n--;
	if (n > 15)
		n = 15;
	memcpy(comm, buf, n);
	comm[n] = '\0';
	return true;
}

/* the socket inode an fd link names, 0 if it is not a socket */
static uint64_t link_inode(int fd_dir, const char *name)
{
	char link[64];
	uint64_t ino = 0;
	ssize_t len;

	/* ENOENT: the fd was closed since readdir(); any error: skip it */
	len = readlinkat(fd_dir, name, link, sizeof(link) - 1);
	if (len <= 8 || memcmp(link, "socket:[", 8))
		return 0;
	link[len] = '\0';
	for (char *p = link + 8; *p >= '0' && *p <= '9'; p++)
		ino = ino * 10 + (uint64_t)(*p - '0');
	return ino;
}

static int add_holder(struct scan *sc, uint64_t inode, uint32_t pid, int fd, const char *comm)
{
	struct holder_scan *o = sc->out;

	if (o->n == sc->cap) {
		int ncap = sc->cap ? sc->cap * 2 : 16;
		struct holder *h;

		if (ncap > sc->max_results)
			ncap = sc->max_results;
		h = realloc(o->h, ncap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		o->h = h;
		sc->cap = ncap;
	}
	o->h[o->n] = (struct holder){ .inode = inode, .pid = pid, .fd = fd };
	memcpy(o->h[o->n].comm, comm, sizeof(o->h[o->n].comm));
	o->n++;
	return 0;
}

/* an fd number from its /proc/PID/fd entry name, -1 for "." and ".." */
static int fd_number(const char *name)
{
	int fd = 0;

	if (!*name)
		return -1;
	for (; *name; name++) {
		if (*name < '0' || *name > '9')
			return -1;
		fd = fd * 10 + (*name - '0');
	}
	return fd;
}

/*
 * Looks at one fd link.  Returns 1 when the process is gone (its comm
 * cannot be read), 0 to go on, -ENOMEM.
 */
static int check_fd(struct scan *sc, int proc_fd, int fd_dir, const char *name, uint32_t pid,
		    char comm[16])
{
	uint64_t ino;
	int fd = fd_number(name);

	if (fd < 0)
		return 0;
	ino = link_inode(fd_dir, name);
	sc->out->fds_read++;
	if (!ino || !bsearch(&ino, sc->inodes, sc->n_inodes, sizeof(ino), cmp_u64))
		return 0;
	if (!comm[0] && !read_comm(proc_fd, comm))
		return 1;
	return add_holder(sc, ino, pid, fd, comm);
}

/*
 * One process's fd table.  Returns 1 to end the whole scan (a limit was
 * hit), 0 to go on, -ENOMEM.  A process that exits meanwhile just ends
 * its readdir() early or fails its readlinks: it is skipped, not an error.
 * The budget is checked per fd, so one process with a huge fd table
 * cannot hold the scan up.
 */
static int scan_process(struct scan *sc, int proc_dir, const char *pid_name, uint32_t pid)
{
	char comm[16] = "";
	struct dirent *de;
	int proc_fd, fd_dir, ret = 0;
	DIR *d;

	proc_fd = openat(proc_dir, pid_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (proc_fd < 0)
		return 0;
	/* EACCES (not ours, no CAP_SYS_PTRACE), ENOENT (gone): skip */
	fd_dir = openat(proc_fd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d = fd_dir < 0 ? NULL : fdopendir(fd_dir);
	if (!d) {
		if (fd_dir >= 0)
			close(fd_dir);
		close(proc_fd);
		return 0;
	}
	sc->out->procs++;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (over_budget(sc)) {
			ret = 1;
			break;
		}
		ret = check_fd(sc, proc_fd, fd_dir, de->d_name, pid, comm);
		if (ret == 1) {
			ret = 0; /* this process exited: go on with the next */
			break;
		}
		if (ret < 0)
			break;
		if (sc->out->n >= sc->max_results) {
			stop(sc, "result limit");
			ret = 1;
			break;
		}
	}
	closedir(d);
	close(proc_fd);
	return ret;
}

/* a /proc entry naming a process (thread group leaders only: /proc lists no other tids) */
static bool pid_entry(const char *name, uint32_t *pid)
{
	int n = fd_number(name);

	if (n <= 0)
		return false;
	*pid = (uint32_t)n;
	return true;
}

static int scan_proc(struct scan *sc)
{
	struct dirent *de;
	int ret = 0;
	DIR *proc = opendir("/proc");

	if (!proc)
		return -errno;
	while (ret == 0 && (de = readdir(proc))) {
		uint32_t pid;

		if (!pid_entry(de->d_name, &pid))
			continue;
		if (now_ns() >= sc->deadline_ns) {
			stop(sc, "time budget");
			break;
		}
		ret = scan_process(sc, dirfd(proc), de->d_name, pid);
	}
	closedir(proc);
	return ret < 0 ? ret : 0;
}

int holders_find_limited(const uint64_t *inodes, int n_inodes, int max_results,
			 unsigned int budget_ms, uint64_t max_fds, struct holder_scan *out)
{
	uint64_t start = now_ns();
	struct scan sc = {
		.max_results = max_results,
		.max_fds = max_fds,
		.out = out,
	};
	uint64_t *sorted;
	int err;

	memset(out, 0, sizeof(*out));
	if (max_results <= 0)
		return -EINVAL;
	if (!budget_ms)
		budget_ms = HOLDERS_DEFAULT_BUDGET_MS;
	sc.deadline_ns = start + budget_ms * 1000000ULL;
	err = sorted_inodes(inodes, n_inodes, &sorted);
	if (err <= 0)
		return err;
	sc.inodes = sorted;
	sc.n_inodes = err;
	err = scan_proc(&sc);
	free(sorted);
	out->elapsed_ms = (unsigned int)((now_ns() - start) / 1000000);
	if (err) {
		holder_scan_free(out);
		return err;
	}
	if (out->n > 1)
		qsort(out->h, out->n, sizeof(*out->h), cmp_holder);
	return 0;
}

int holders_find(const uint64_t *inodes, int n_inodes, int max_results, unsigned int budget_ms,
		 struct holder_scan *out)
{
	return holders_find_limited(inodes, n_inodes, max_results, budget_ms, HOLDERS_MAX_FDS, out);
}

const struct holder *holders_of(const struct holder_scan *s, uint64_t inode, int *count)
{
	int lo = 0, hi = s->n, first;

	*count = 0;
	/* lower bound: the first holder with h[].inode >= inode */
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;

		if (s->h[mid].inode < inode)
			lo = mid + 1;
		else
			hi = mid;
	}
	first = lo;
	while (lo < s->n && s->h[lo].inode == inode)
		lo++;
	*count = lo - first;
	return *count ? &s->h[first] : NULL;
}

void holder_scan_free(struct holder_scan *s)
{
	free(s->h);
	memset(s, 0, sizeof(*s));
}
