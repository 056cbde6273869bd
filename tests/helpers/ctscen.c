// SPDX-License-Identifier: GPL-2.0
/*
 * ctscen - drive real TCP close scenarios on loopback for closetrace
 * integration tests.
 *
 *   ctscen SCENARIO [-6] [--port N] [--cport N] [--delay MS] [--gap MS]
 *                   [--wait-file PATH] [--set-sysctl] [--debug]
 *                   [--addr A] [--count N] [--max-seconds S]   (reuse-churn)
 *                   [--signal N] (killed) [--linger S] [--peer-acks|--peer-silent]
 *                   (linger-wait) [--hold-ms M] (inherit, held-port)
 *                   [--leak-ms M] [--first-line] (close-wait-leak)
 *                   [--first-reuseaddr] (restart)
 *
 * Run it inside a private network namespace (ip netns exec NS ctscen ...).
 * Server and client are separate forked processes; the parent coordinates
 * them over pipes, verifies socket states with sock_diag and prints exactly
 * one JSON object line on stdout ("hold" prints two lines).  All timestamps
 * are CLOCK_MONOTONIC nanoseconds (same clock as bpf_ktime_get_ns()).
 * On failure: one line on stderr, exit status 1.
 *
 * Build: gcc -O2 -Wall -Wextra -Werror -o ctscen ctscen.c
 * See README.md next to this file for the scenarios and JSON fields.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* TCP states as the kernel numbers them (include/net/tcp_states.h) */
enum {
	ST_ESTABLISHED = 1, ST_SYN_SENT, ST_SYN_RECV, ST_FIN_WAIT1, ST_FIN_WAIT2,
	ST_TIME_WAIT, ST_CLOSE, ST_CLOSE_WAIT, ST_LAST_ACK, ST_LISTEN, ST_CLOSING,
};

#define NFT_TABLE "ctscen_sim"
#define MAX_CH 8
#define STEP_MS 10000 /* default timeout of one coordination step */

/* ------------------------------------------------------------------ */
/* global options / state                                             */

static const char *g_scen = "?";
static int g_fam = AF_INET;
static int g_port = 7001;
static int g_cport = 7100;
static int g_delay = 2000;
static int g_gap = 1200;
static int g_set_sysctl;
static int g_debug;
static const char *g_wait_file;
static unsigned g_alarm = 30;
static int g_gap_set;		/* --gap given (reuse-churn defaults to 100) */
static int g_count = 20;	/* reuse-churn: connect() attempts */
static int g_max_seconds = 20;	/* reuse-churn: overall time bound */
static const char *g_addr_str;	/* reuse-churn: server address */
static struct in_addr g_addr4;
static struct in6_addr g_addr6;
static int g_signal = SIGKILL;	/* killed: signal sent to the client */
static int g_linger = 2;	/* linger-wait: SO_LINGER seconds */
static int g_peer_silent;	/* linger-wait: drop server -> client */
static int g_hold_ms = -1;	/* inherit(-child) 1500, held-port 3000 */
static int g_leak_ms = 4000;	/* close-wait-leak: CLOSE_WAIT dwell */
static int g_first_line;	/* close-wait-leak: early pid/port line */
static int g_first_reuse;	/* restart: first server sets SO_REUSEADDR */
static int g_report_fd = -1;	/* inherit-child: report pipe */

static int g_is_child;
static int g_cmd_r = -1; /* child: commands from parent */
static int g_rep_w = -1; /* child: reports to parent */

static char g_nft_path[64];
static char g_nft_table[32] = NFT_TABLE;
/* processes that are not our direct children at first (grandchildren that
 * we adopt as subreaper): killed on failure like the spawned ones */
static volatile pid_t g_extra[4];
static volatile sig_atomic_t g_nft_active;
static char g_alarm_msg[128];
static size_t g_alarm_msg_len;

struct chan {
	const char *name;
	pid_t pid;
	int cmd_w;
	int rep_r;
	int eof;
	int exit_sent;
	char buf[2048];
	size_t blen;
	char *pend[64];
	int npend;
};
static struct chan g_ch[MAX_CH];
static volatile sig_atomic_t g_nch;

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static const char *fam_name(void)
{
	return g_fam == AF_INET6 ? "ipv6" : "ipv4";
}

/* ------------------------------------------------------------------ */
/* nftables (simultaneous scenario)                                   */

/* async-signal-safe: fork/open/dup2/execv/waitpid/_exit only */
static int nft_exec(char *const argv[], int stdin_fd, int quiet)
{
	pid_t pid;
	int st;

	if (!g_nft_path[0])
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int dn = open("/dev/null", O_RDWR);

		if (dn >= 0) {
			if (stdin_fd < 0)
				dup2(dn, 0);
			dup2(dn, 1); /* never pollute our stdout */
			if (quiet)
				dup2(dn, 2);
		}
		if (stdin_fd >= 0)
			dup2(stdin_fd, 0);
		execv(g_nft_path, argv);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int nft_delete_table(int quiet)
{
	static char a0[] = "nft", a1[] = "delete", a2[] = "table", a3[] = "inet";
	char *argv[] = { a0, a1, a2, a3, g_nft_table, NULL };

	return nft_exec(argv, -1, quiet);
}

static void nft_cleanup(void)
{
	if (g_nft_active) {
		g_nft_active = 0;
		nft_delete_table(1);
	}
}

/* after kill_children() and reaping the spawned children: adopted
 * grandchildren are ours now (subreaper); async-signal-safe */
static void reap_extra(void)
{
	for (size_t i = 0; i < sizeof(g_extra) / sizeof(g_extra[0]); i++)
		if (g_extra[i] > 0)
			while (waitpid(g_extra[i], NULL, 0) < 0 && errno == EINTR)
				;
}

static void kill_children(void)
{
	for (int i = 0; i < g_nch; i++)
		if (g_ch[i].pid > 0)
			kill(g_ch[i].pid, SIGKILL);
	for (size_t i = 0; i < sizeof(g_extra) / sizeof(g_extra[0]); i++)
		if (g_extra[i] > 0)
			kill(g_extra[i], SIGKILL);
}

/* ------------------------------------------------------------------ */
/* failure handling                                                   */

__attribute__((noreturn, format(printf, 1, 2)))
static void die(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if (*p == '\n')
			*p = ' ';

	if (g_is_child) {
		char line[600];
		int n = snprintf(line, sizeof(line), "error %s\n", msg);

		if (g_rep_w < 0 || write(g_rep_w, line, (size_t)n) != n)
			fprintf(stderr, "ctscen: %s: %s\n", g_scen, msg);
		_exit(1);
	}
	kill_children();
	nft_cleanup();
	fflush(stdout);
	fprintf(stderr, "ctscen: %s: %s\n", g_scen, msg);
	for (int i = 0; i < g_nch; i++)
		if (g_ch[i].pid > 0)
			waitpid(g_ch[i].pid, NULL, 0);
	reap_extra();
	exit(1);
}

static void on_fatal_signal(int sig)
{
	if (g_is_child) {
		static const char m[] = "error timed out (alarm) or killed\n";

		if (g_rep_w >= 0 && write(g_rep_w, m, sizeof(m) - 1) < 0) {
			/* nothing else we can do */
		}
		_exit(1);
	}
	kill_children();
	for (int i = 0; i < g_nch; i++)
		if (g_ch[i].pid > 0)
			waitpid(g_ch[i].pid, NULL, 0);
	reap_extra();
	nft_cleanup();
	if (sig == SIGALRM) {
		if (write(2, g_alarm_msg, g_alarm_msg_len) < 0) {
			/* ignore */
		}
	} else {
		static const char m[] = "ctscen: interrupted by a signal\n";

		if (write(2, m, sizeof(m) - 1) < 0) {
			/* ignore */
		}
	}
	_exit(1);
}

/* ------------------------------------------------------------------ */
/* parent <-> child channels                                          */

/* child: read one line from fd with a deadline; 0 ok, -1 eof, -2 timeout */
static int fd_read_line(int fd, char *buf, size_t cap, long long deadline)
{
	size_t n = 0;

	for (;;) {
		long long rem = (deadline - now_ns()) / 1000000;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char c;
		ssize_t k;
		int r;

		if (rem < 0)
			return -2;
		r = poll(&p, 1, rem > INT_MAX ? INT_MAX : (int)rem + 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -3;
		}
		if (r == 0)
			continue; /* re-check deadline */
		k = read(fd, &c, 1);
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -3;
		}
		if (k == 0)
			return -1;
		if (c == '\n') {
			buf[n] = 0;
			return 0;
		}
		if (n + 1 < cap)
			buf[n++] = c;
	}
}

__attribute__((format(printf, 2, 3)))
static void rep(const char *key, const char *fmt, ...)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "%s ", key);
	va_list ap;

	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	line[n++] = '\n';
	if (write(g_rep_w, line, (size_t)n) != n)
		_exit(1);
}

static void cmd_get(char *line, size_t cap, int timeout_ms)
{
	int r = fd_read_line(g_cmd_r, line, cap, now_ns() + timeout_ms * 1000000LL);

	if (r == -1)
		_exit(1); /* parent is gone */
	if (r == -2)
		die("timeout waiting for a command");
	if (r < 0)
		die("command pipe: %s", strerror(errno));
}

static void cmd_wait(const char *word, int timeout_ms)
{
	char line[128];

	cmd_get(line, sizeof(line), timeout_ms);
	if (strcmp(line, word))
		die("expected command '%s', got '%s'", word, line);
}

static void cmd_send(struct chan *c, const char *word)
{
	char line[128];
	int n = snprintf(line, sizeof(line), "%s\n", word);

	if (write(c->cmd_w, line, (size_t)n) != n)
		die("cannot send '%s' to %s: %s", word, c->name, strerror(errno));
	if (!strcmp(word, "exit"))
		c->exit_sent = 1;
}

static void chan_exit_desc(struct chan *c, char *out, size_t cap)
{
	int st;
	pid_t r = waitpid(c->pid, &st, 0);

	if (r != c->pid)
		snprintf(out, cap, "unknown status");
	else if (WIFEXITED(st))
		snprintf(out, cap, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(out, cap, "killed by signal %d", WTERMSIG(st));
	else
		snprintf(out, cap, "status 0x%x", st);
	c->pid = -1;
}

/* parent: read whatever the children have written, until deadline or data */
static void pump(long long deadline)
{
	struct pollfd p[MAX_CH];
	int idx[MAX_CH], n = 0, r;
	long long rem;

	for (int i = 0; i < g_nch; i++) {
		if (g_ch[i].eof)
			continue;
		p[n].fd = g_ch[i].rep_r;
		p[n].events = POLLIN;
		p[n].revents = 0;
		idx[n++] = i;
	}
	rem = (deadline - now_ns()) / 1000000;
	if (rem < 0)
		rem = 0;
	if (n == 0) {
		sleep_ms(rem > 10 ? 10 : rem);
		return;
	}
	r = poll(p, (nfds_t)n, rem > INT_MAX ? INT_MAX : (int)rem + 1);
	if (r <= 0)
		return;
	for (int j = 0; j < n; j++) {
		struct chan *c = &g_ch[idx[j]];
		ssize_t k;
		char *s, *nl;

		if (!p[j].revents)
			continue;
		k = read(c->rep_r, c->buf + c->blen, sizeof(c->buf) - 1 - c->blen);
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("reading from %s: %s", c->name, strerror(errno));
		}
		if (k == 0) {
			c->eof = 1;
			if (!c->exit_sent) {
				char d[64];

				chan_exit_desc(c, d, sizeof(d));
				die("%s process exited unexpectedly (%s)", c->name, d);
			}
			continue;
		}
		c->blen += (size_t)k;
		c->buf[c->blen] = 0;
		s = c->buf;
		while ((nl = strchr(s, '\n'))) {
			*nl = 0;
			if (!strncmp(s, "error ", 6))
				die("%s: %s", c->name, s + 6);
			if (g_debug)
				fprintf(stderr, "[%s] %s\n", c->name, s);
			if (c->npend >= (int)(sizeof(c->pend) / sizeof(c->pend[0])))
				die("too many unconsumed reports from %s", c->name);
			c->pend[c->npend++] = strdup(s);
			s = nl + 1;
		}
		c->blen = strlen(s);
		memmove(c->buf, s, c->blen + 1);
		if (c->blen >= sizeof(c->buf) - 1)
			die("overlong report line from %s", c->name);
	}
}

/* parent: wait for the next "key value" report of a child, return value */
static char *kv_get(struct chan *c, const char *key, int timeout_ms)
{
	size_t kl = strlen(key);
	long long deadline = now_ns() + timeout_ms * 1000000LL;

	for (;;) {
		for (int i = 0; i < c->npend; i++) {
			char *l = c->pend[i];

			if (!strncmp(l, key, kl) && l[kl] == ' ') {
				char *v = strdup(l + kl + 1);

				free(l);
				memmove(&c->pend[i], &c->pend[i + 1],
					(size_t)(c->npend - i - 1) * sizeof(char *));
				c->npend--;
				return v;
			}
		}
		if (now_ns() > deadline)
			die("timeout waiting for '%s' from %s", key, c->name);
		pump(deadline);
	}
}

static long long kv_ll(struct chan *c, const char *key, int timeout_ms)
{
	char *v = kv_get(c, key, timeout_ms), *end;
	long long x = strtoll(v, &end, 10);

	if (*end)
		die("bad value '%s' for %s from %s", v, key, c->name);
	free(v);
	return x;
}

typedef void (*child_fn)(const void *arg);

static struct chan *spawn(const char *name, child_fn fn, const void *arg)
{
	int cmd[2], rp[2];
	struct chan *c;
	pid_t ppid = getpid(), pid;

	if (g_nch >= MAX_CH)
		die("too many children");
	if (pipe2(cmd, O_CLOEXEC) || pipe2(rp, O_CLOEXEC))
		die("pipe: %s", strerror(errno));
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		g_is_child = 1;
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != ppid)
			_exit(1);
		for (int i = 0; i < g_nch; i++) {
			close(g_ch[i].cmd_w);
			close(g_ch[i].rep_r);
			g_ch[i].pid = -1;
		}
		g_nch = 0;
		g_nft_active = 0;
		for (size_t i = 0; i < sizeof(g_extra) / sizeof(g_extra[0]); i++)
			g_extra[i] = 0;
		close(cmd[1]);
		close(rp[0]);
		g_cmd_r = cmd[0];
		g_rep_w = rp[1];
		alarm(g_alarm + 5);
		fn(arg);
		_exit(0);
	}
	close(cmd[0]);
	close(rp[1]);
	c = &g_ch[g_nch];
	memset(c, 0, sizeof(*c));
	c->name = name;
	c->pid = pid;
	c->cmd_w = cmd[1];
	c->rep_r = rp[0];
	g_nch++;
	return c;
}

/* parent: tell every child to exit and reap them (bounded) */
static void finish_children(void)
{
	long long deadline = now_ns() + 5000000000LL;
	int open_ch;

	for (int i = 0; i < g_nch; i++)
		if (!g_ch[i].exit_sent && !g_ch[i].eof)
			cmd_send(&g_ch[i], "exit");
	do {
		open_ch = 0;
		for (int i = 0; i < g_nch; i++)
			open_ch += !g_ch[i].eof;
		if (!open_ch)
			break;
		if (now_ns() > deadline)
			die("children did not exit in time");
		pump(deadline);
	} while (1);
	for (int i = 0; i < g_nch; i++) {
		struct chan *c = &g_ch[i];
		int st;

		if (c->pid <= 0)
			continue;
		while (waitpid(c->pid, &st, 0) < 0)
			if (errno != EINTR)
				die("waitpid: %s", strerror(errno));
		c->pid = -1;
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			die("%s process failed (status 0x%x)", c->name, st);
	}
}

/* ------------------------------------------------------------------ */
/* socket helpers                                                     */

static socklen_t mkaddr(struct sockaddr_storage *ss, int port)
{
	memset(ss, 0, sizeof(*ss));
	if (g_fam == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;

		s->sin_family = AF_INET;
		s->sin_port = htons((uint16_t)port);
		s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		return sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;

		s->sin6_family = AF_INET6;
		s->sin6_port = htons((uint16_t)port);
		s->sin6_addr = in6addr_loopback;
		return sizeof(*s);
	}
}

static int sock_port(int fd, int peer)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);

	if ((peer ? getpeername(fd, (struct sockaddr *)&ss, &l)
		  : getsockname(fd, (struct sockaddr *)&ss, &l)) < 0)
		die("get%sname: %s", peer ? "peer" : "sock", strerror(errno));
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static int mk_listener(int port)
{
	struct sockaddr_storage ss;
	socklen_t l = mkaddr(&ss, port);
	int one = 1;
	int fd = socket(g_fam, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, l) < 0)
		die("bind listener port %d: %s", port, strerror(errno));
	if (listen(fd, 16) < 0)
		die("listen: %s", strerror(errno));
	return fd;
}

static int wait_fd(int fd, short ev, int timeout_ms)
{
	long long deadline = now_ns() + timeout_ms * 1000000LL;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = ev };
		long long rem = (deadline - now_ns()) / 1000000;
		int r;

		if (rem < 0)
			return 0;
		r = poll(&p, 1, (int)rem + 1);
		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
	}
}

static int do_accept(int lfd, int timeout_ms)
{
	int fd;

	if (!wait_fd(lfd, POLLIN, timeout_ms))
		die("accept: timeout");
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		die("accept: %s", strerror(errno));
	return fd;
}

static int do_connect(int bind_port, long long *t_before, long long *t_after)
{
	struct sockaddr_storage ss;
	socklen_t l;
	int fd = socket(g_fam, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int one = 1, err = 0, fl;
	socklen_t el = sizeof(err);

	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (bind_port) {
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)))
			die("SO_REUSEADDR: %s", strerror(errno));
		l = mkaddr(&ss, bind_port);
		if (bind(fd, (struct sockaddr *)&ss, l) < 0)
			die("bind local port %d: %s", bind_port, strerror(errno));
	}
	l = mkaddr(&ss, g_port);
	*t_before = now_ns();
	if (connect(fd, (struct sockaddr *)&ss, l) < 0) {
		if (errno != EINPROGRESS)
			die("connect to port %d: %s", g_port, strerror(errno));
		if (!wait_fd(fd, POLLOUT, 5000))
			die("connect to port %d: timeout", g_port);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err)
			die("connect to port %d: %s", g_port, strerror(err));
	}
	*t_after = now_ns();
	fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return fd;
}

static void write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n) {
		ssize_t k;

		if (!wait_fd(fd, POLLOUT, 5000))
			die("send: timeout");
		k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("send: %s", strerror(errno));
		}
		p += k;
		n -= (size_t)k;
	}
}

static void read_exact(int fd, size_t n, int timeout_ms)
{
	char buf[256];
	long long deadline = now_ns() + timeout_ms * 1000000LL;

	while (n) {
		long long rem = (deadline - now_ns()) / 1000000;
		ssize_t k;

		if (rem < 0 || !wait_fd(fd, POLLIN, (int)rem))
			die("read: timeout");
		k = recv(fd, buf, n < sizeof(buf) ? n : sizeof(buf), MSG_DONTWAIT);
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("read: %s", strerror(errno));
		}
		if (k == 0)
			die("read: unexpected EOF");
		n -= (size_t)k;
	}
}

/* read (and discard) until EOF: 0 = EOF, else errno (e.g. ECONNRESET) */
static int read_to_eof(int fd, int timeout_ms)
{
	char buf[512];
	long long deadline = now_ns() + timeout_ms * 1000000LL;

	for (;;) {
		long long rem = (deadline - now_ns()) / 1000000;
		ssize_t k;

		if (rem < 0 || !wait_fd(fd, POLLIN, (int)rem))
			die("waiting for EOF: timeout");
		k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (k == 0)
			return 0;
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return errno;
		}
	}
}

static void rep_rtt(int fd)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) == 0)
		rep("rtt", "rtt_us=%u rttvar_us=%u rto_us=%u", ti.tcpi_rtt,
		    ti.tcpi_rttvar, ti.tcpi_rto);
}

static int tcp_state_of(int fd)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0)
		die("TCP_INFO: %s", strerror(errno));
	return ti.tcpi_state;
}

static void pin_cpu(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		die("sched_setaffinity(%d): %s", cpu, strerror(errno));
}

/* ------------------------------------------------------------------ */
/* sock_diag                                                          */

/*
 * Look up the TCP socket (incl. TIME_WAIT / orphaned FIN_WAIT2 minisocks)
 * with local port sport and remote port dport in this netns.
 * Returns its state (for timewait sockets: the tw substate, i.e.
 * ST_TIME_WAIT or ST_FIN_WAIT2), 0 if there is none.
 */
static int diag_state(int sport, int dport)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 r;
	} req;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	struct timeval tv = { 2, 0 };
	long buf[8192 / sizeof(long)];
	int fd, found = 0, done = 0;

	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		die("sock_diag socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	memset(&req, 0, sizeof(req));
	req.nlh.nlmsg_len = sizeof(req);
	req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.nlh.nlmsg_seq = 1;
	req.r.sdiag_family = (uint8_t)g_fam;
	req.r.sdiag_protocol = IPPROTO_TCP;
	req.r.idiag_states = 0xffffffffu;
	if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("sock_diag send: %s", strerror(errno));
	while (!done) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *h;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("sock_diag recv: %s", strerror(errno));
		}
		if (n == 0)
			break;
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, (unsigned)n);
		     h = NLMSG_NEXT(h, n)) {
			struct inet_diag_msg *m;

			if (h->nlmsg_type == NLMSG_DONE) {
				done = 1;
				break;
			}
			if (h->nlmsg_type == NLMSG_ERROR)
				die("sock_diag: error reply");
			m = NLMSG_DATA(h);
			if (ntohs(m->id.idiag_sport) == sport &&
			    ntohs(m->id.idiag_dport) == dport)
				found = m->idiag_state;
		}
	}
	close(fd);
	return found;
}

/* poll until diag_state()==want (want 0: socket gone); 1 if reached */
static int diag_wait(int sport, int dport, int want, int timeout_ms,
		     long long *when)
{
	long long deadline = now_ns() + timeout_ms * 1000000LL;

	for (;;) {
		int st = diag_state(sport, dport);
		long long t = now_ns();

		if (st == want) {
			if (when)
				*when = t;
			return 1;
		}
		if (t > deadline)
			return 0;
		sleep_ms(5);
	}
}

/* ------------------------------------------------------------------ */
/* the two roles                                                      */

enum mode { M_CF, M_CW, M_SF, M_SIM, M_LINGER0, M_UNREAD };

struct role_cfg {
	enum mode mode;
	int nconn;
	int bind_port; /* client: local port to bind (0 = ephemeral) */
	int cpu;       /* pin to this cpu (-1: no pinning) */
	int delay_ms;  /* server: CLOSE_WAIT dwell for M_CW */
	int hold;      /* server: print the early pid/port line */
};

static const char hello[] = "hello";

static long long coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* length of a jiffy: CLOCK_MONOTONIC_COARSE advances once per tick */
static long long tick_ns(void)
{
	struct timespec ts;

	if (clock_getres(CLOCK_MONOTONIC_COARSE, &ts) || ts.tv_sec ||
	    ts.tv_nsec <= 0)
		return 4000000;
	return ts.tv_nsec;
}

/*
 * Simultaneous close, shutdown(SHUT_WR) in a chosen jiffy.
 * "info" -> report our RTO; "shut T" -> shutdown(SHUT_WR) right after the
 * first tick edge of CLOCK_MONOTONIC_COARSE past T - tick/2 (the coarse
 * clock and jiffies advance together), then report that edge.
 * The FIN retransmit timer is armed at jiffies + rto; picking the jiffy of
 * each side's shutdown lets both retransmit timers expire in the same tick.
 * We spin at SCHED_FIFO (best effort) so a busy CPU cannot make us late.
 */
static void sim_shut(int fd)
{
	struct tcp_info ti;
	struct sched_param rt = { .sched_priority = 10 }, normal = { 0 };
	struct timespec wake;
	socklen_t l = sizeof(ti);
	char line[128], *end;
	long long target, edge, t, tick = tick_ns(), deadline;
	int is_rt;

	cmd_wait("info", STEP_MS);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l))
		die("TCP_INFO: %s", strerror(errno));
	rep("rto_us", "%u", ti.tcpi_rto);
	cmd_get(line, sizeof(line), STEP_MS);
	if (strncmp(line, "shut ", 5))
		die("expected 'shut T', got '%s'", line);
	target = strtoll(line + 5, &end, 10) - tick / 2;
	if (*end || target <= 0)
		die("bad shut target '%s'", line);
	is_rt = sched_setscheduler(0, SCHED_FIFO, &rt) == 0;
	t = target - 2000000;
	wake.tv_sec = t / 1000000000LL;
	wake.tv_nsec = t % 1000000000LL;
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, NULL) == EINTR)
		;
	deadline = now_ns() + 1000000000LL;
	while ((edge = coarse_ns()) < target)
		if (now_ns() > deadline)
			die("tick edge not reached (coarse clock stuck?)");
	t = now_ns();
	if (shutdown(fd, SHUT_WR) < 0)
		die("shutdown: %s", strerror(errno));
	if (is_rt)
		sched_setscheduler(0, SCHED_OTHER, &normal);
	rep("shut_edge", "%lld", edge);
	rep("shut_ns", "%lld", t);
}

/*
 * Simultaneous close, after shutdown(SHUT_WR): wait for the parent's go,
 * report the socket state (TCP_CLOSE once it moved to TIME_WAIT), close().
 * Deliberately no TCP_INFO polling while the FINs are in flight: it takes
 * the socket lock, and a retransmit timer firing meanwhile gets deferred to
 * release_sock(), which serialises the two FINs again.
 */
static void sim_close(int fd, const char *key)
{
	long long t;

	cmd_wait("close", STEP_MS);
	rep("final_state", "%d", tcp_state_of(fd));
	t = now_ns();
	close(fd);
	rep(key, "%lld", t);
}

static void server_main(const void *arg)
{
	const struct role_cfg *cfg = arg;
	int lfd, fd;
	char big[100];

	pin_cpu(cfg->cpu);
	lfd = mk_listener(g_port);
	if (cfg->hold) {
		printf("{\"server_pid\":%d,\"server_port\":%d}\n", (int)getpid(),
		       sock_port(lfd, 0));
		fflush(stdout);
	}
	rep("ready", "%d", sock_port(lfd, 0));
	for (int i = 0; i < cfg->nconn; i++) {
		long long t;
		int r;

		fd = do_accept(lfd, (int)g_alarm * 1000);
		rep("accepted", "%d", sock_port(fd, 1));
		read_exact(fd, sizeof(hello) - 1, 5000);
		rep("srv_data", "%d", (int)sizeof(hello) - 1);
		switch (cfg->mode) {
		case M_CF:
		case M_CW:
			r = read_to_eof(fd, STEP_MS);
			t = now_ns();
			if (r)
				die("server expected EOF, got %s", strerror(r));
			rep("server_eof_ns", "%lld", t);
			if (cfg->mode == M_CW)
				sleep_ms(cfg->delay_ms);
			t = now_ns();
			close(fd);
			rep("server_close_ns", "%lld", t);
			break;
		case M_SF:
			cmd_wait("close", STEP_MS);
			t = now_ns();
			close(fd);
			rep("server_close_ns", "%lld", t);
			break;
		case M_SIM:
			if (g_debug)
				rep_rtt(fd);
			sim_shut(fd);
			sim_close(fd, "server_close_ns");
			break;
		case M_LINGER0:
		case M_UNREAD:
			if (cfg->mode == M_UNREAD) {
				memset(big, 'x', sizeof(big));
				write_all(fd, big, sizeof(big));
				rep("srv_sent", "%d", (int)sizeof(big));
			}
			r = read_to_eof(fd, STEP_MS);
			rep("server_read", "%s", r == 0 ? "eof" :
			    r == ECONNRESET ? "reset" : strerror(r));
			t = now_ns();
			close(fd);
			rep("server_close_ns", "%lld", t);
			break;
		}
	}
	cmd_wait("exit", (int)(g_alarm + 5) * 1000);
	close(lfd);
}

static void client_main(const void *arg)
{
	const struct role_cfg *cfg = arg;
	struct linger lg = { 1, 0 };

	pin_cpu(cfg->cpu);
	for (int i = 0; i < cfg->nconn; i++) {
		long long t, t2;
		int fd, r, avail = 0;

		if (i > 0)
			cmd_wait("next", STEP_MS);
		fd = do_connect(cfg->bind_port, &t, &t2);
		rep("client_port", "%d", sock_port(fd, 0));
		rep("connect_ns", "%lld", t);
		rep("connected_ns", "%lld", t2);
		write_all(fd, hello, sizeof(hello) - 1);
		switch (cfg->mode) {
		case M_CF:
		case M_CW:
			cmd_wait("close", STEP_MS);
			t = now_ns();
			close(fd);
			rep("client_close_ns", "%lld", t);
			break;
		case M_SF:
			r = read_to_eof(fd, STEP_MS);
			t = now_ns();
			if (r)
				die("client expected EOF, got %s", strerror(r));
			rep("client_eof_ns", "%lld", t);
			t = now_ns();
			close(fd);
			rep("client_close_ns", "%lld", t);
			break;
		case M_SIM:
			if (g_debug)
				rep_rtt(fd);
			sim_shut(fd);
			sim_close(fd, "client_close_ns");
			break;
		case M_LINGER0:
			cmd_wait("close", STEP_MS);
			if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)))
				die("SO_LINGER: %s", strerror(errno));
			t = now_ns();
			close(fd);
			rep("client_close_ns", "%lld", t);
			break;
		case M_UNREAD:
			/* wait until the 100 bytes sit in our receive queue */
			for (int k = 0; k < 5000 && avail < 100; k++) {
				if (ioctl(fd, FIONREAD, &avail) < 0)
					die("FIONREAD: %s", strerror(errno));
				if (avail < 100)
					sleep_ms(1);
			}
			if (avail < 100)
				die("unread data did not arrive (%d bytes)", avail);
			rep("client_unread", "%d", avail);
			t = now_ns();
			close(fd);
			rep("client_close_ns", "%lld", t);
			break;
		}
	}
	cmd_wait("exit", (int)(g_alarm + 5) * 1000);
}

/* ------------------------------------------------------------------ */
/* JSON output                                                        */

static char g_json[8192];
static size_t g_jlen;

__attribute__((format(printf, 1, 2)))
static void jraw(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(g_json + g_jlen, sizeof(g_json) - g_jlen, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(g_json) - g_jlen)
		die("json buffer overflow");
	g_jlen += (size_t)n;
}

static void jkey(const char *k)
{
	jraw("%s\"%s\":", g_jlen > 1 ? "," : "", k);
}

static void jll(const char *k, long long v)
{
	jkey(k);
	jraw("%lld", v);
}

static void jstr(const char *k, const char *v)
{
	jkey(k);
	jraw("\"");
	for (; *v; v++) {
		if (*v == '"' || *v == '\\')
			jraw("\\%c", *v);
		else if ((unsigned char)*v < 0x20)
			jraw("\\u%04x", *v);
		else
			jraw("%c", *v);
	}
	jraw("\"");
}

static void jbool(const char *k, int v)
{
	jkey(k);
	jraw("%s", v ? "true" : "false");
}

static void jbegin(void)
{
	g_jlen = 0;
	jraw("{");
	jstr("scenario", g_scen);
	jstr("family", fam_name());
}

static void jcommon(pid_t cpid, pid_t spid, int cport, int sport)
{
	jll("client_pid", cpid);
	jll("server_pid", spid);
	jll("client_port", cport);
	jll("server_port", sport);
}

static void jend(void)
{
	jraw("}");
	printf("%s\n", g_json);
	fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* misc                                                               */

static void wait_for_file(void)
{
	long long deadline = now_ns() + 20000000000LL;
	struct stat st;

	if (!g_wait_file)
		return;
	while (stat(g_wait_file, &st) < 0) {
		if (now_ns() > deadline)
			die("wait-file %s did not appear within 20 s", g_wait_file);
		sleep_ms(10);
	}
}

static int read_sysctl_int(const char *path)
{
	FILE *f = fopen(path, "r");
	int v = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%d", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

static uint32_t csum_add(uint32_t sum, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (; len > 1; len -= 2, p += 2)
		sum += (uint32_t)(p[0] << 8 | p[1]);
	if (len)
		sum += (uint32_t)(p[0] << 8);
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v & 0xffff);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

#define F_FIN 0x01
#define F_SYN 0x02
#define F_RST 0x04
#define F_ACK 0x10

struct seg {
	uint16_t sport, dport;
	uint32_t seq, ack, plen;
	uint8_t flags;
};

/* parse an IP packet (v4 or v6, v6 without extension headers) */
static int parse_ip_tcp(const uint8_t *p, size_t n, struct seg *s)
{
	size_t off, tot;

	if (n < 1)
		return 0;
	if ((p[0] >> 4) == 4) {
		if (n < 20 || p[9] != IPPROTO_TCP)
			return 0;
		off = (size_t)(p[0] & 0xf) * 4;
		tot = get16(p + 2);
	} else if ((p[0] >> 4) == 6) {
		if (n < 40 || p[6] != IPPROTO_TCP)
			return 0;
		off = 40;
		tot = 40 + (size_t)get16(p + 4);
	} else {
		return 0;
	}
	if (tot > n)
		tot = n;
	if (off + 20 > tot)
		return 0;
	memset(s, 0, sizeof(*s));
	s->sport = get16(p + off);
	s->dport = get16(p + off + 2);
	s->seq = get32(p + off + 4);
	s->ack = get32(p + off + 8);
	s->flags = p[off + 13];
	s->plen = (uint32_t)(tot - off - (size_t)(p[off + 12] >> 4) * 4);
	return 1;
}

/* parse a bare TCP header (IPv6 raw sockets deliver no IP header) */
static int parse_tcp(const uint8_t *p, size_t n, struct seg *s)
{
	if (n < 20)
		return 0;
	memset(s, 0, sizeof(*s));
	s->sport = get16(p);
	s->dport = get16(p + 2);
	s->seq = get32(p + 4);
	s->ack = get32(p + 8);
	s->flags = p[13];
	s->plen = (uint32_t)(n - (size_t)(p[12] >> 4) * 4);
	return 1;
}

static void dbg_seg(const char *tag, const struct seg *s, int extra)
{
	if (!g_debug)
		return;
	fprintf(stderr, "[%s] %u->%u seq=%u ack=%u len=%u %s%s%s%s (%d)\n", tag,
		s->sport, s->dport, s->seq, s->ack, s->plen,
		s->flags & F_SYN ? "S" : "", s->flags & F_FIN ? "F" : "",
		s->flags & F_RST ? "R" : "", s->flags & F_ACK ? "." : "", extra);
}

/* ------------------------------------------------------------------ */
/* scenarios                                                          */

static struct role_cfg mkcfg(enum mode m, int nconn)
{
	struct role_cfg c = { .mode = m, .nconn = nconn, .cpu = -1,
			      .delay_ms = g_delay };
	return c;
}

/* client-first, server-first, linger0, unread, close-wait, hold, tw-expire */
static void scen_basic(enum mode mode, int hold)
{
	struct role_cfg sc = mkcfg(mode, 1), cc = mkcfg(mode, 1);
	struct chan *srv, *cli;
	long long cclose = 0, sclose = 0, seof = 0, ceof = 0;
	int sport, cport, unread = 0, cw_seen = 0, tw = 0;
	pid_t spid, cpid;
	char *sread = NULL;

	sc.hold = hold;
	srv = spawn("server", server_main, &sc);
	spid = srv->pid;
	sport = (int)kv_ll(srv, "ready", STEP_MS);
	if (hold)
		wait_for_file();
	cli = spawn("client", client_main, &cc);
	cpid = cli->pid;
	cport = (int)kv_ll(cli, "client_port", STEP_MS);
	kv_ll(srv, "accepted", STEP_MS);
	kv_ll(srv, "srv_data", STEP_MS);

	switch (mode) {
	case M_CF:
	case M_CW:
		cmd_send(cli, "close");
		cclose = kv_ll(cli, "client_close_ns", STEP_MS);
		seof = kv_ll(srv, "server_eof_ns", STEP_MS);
		if (mode == M_CW)
			cw_seen = diag_wait(sport, cport, ST_CLOSE_WAIT,
					    g_delay / 2 < 1000 ? g_delay / 2 : 1000,
					    NULL);
		sclose = kv_ll(srv, "server_close_ns", STEP_MS + g_delay);
		tw = diag_wait(cport, sport, ST_TIME_WAIT, 2000, NULL);
		break;
	case M_SF:
		cmd_send(srv, "close");
		sclose = kv_ll(srv, "server_close_ns", STEP_MS);
		ceof = kv_ll(cli, "client_eof_ns", STEP_MS);
		cclose = kv_ll(cli, "client_close_ns", STEP_MS);
		tw = diag_wait(sport, cport, ST_TIME_WAIT, 2000, NULL);
		break;
	case M_LINGER0:
	case M_UNREAD:
		if (mode == M_UNREAD) {
			kv_ll(srv, "srv_sent", STEP_MS);
			unread = (int)kv_ll(cli, "client_unread", STEP_MS);
		} else {
			cmd_send(cli, "close");
		}
		cclose = kv_ll(cli, "client_close_ns", STEP_MS);
		sread = kv_get(srv, "server_read", STEP_MS);
		sclose = kv_ll(srv, "server_close_ns", STEP_MS);
		/* expect no TIME_WAIT at all: give it a moment to show up */
		sleep_ms(100);
		tw = diag_state(cport, sport) != 0;
		break;
	default:
		die("internal: bad mode");
	}
	finish_children();

	jbegin();
	jcommon(cpid, spid, cport, sport);
	switch (mode) {
	case M_CF:
	case M_CW:
		if (mode == M_CW)
			jll("delay_ms", g_delay);
		jll("client_close_ns", cclose);
		jll("server_eof_ns", seof);
		jll("server_close_ns", sclose);
		if (mode == M_CW)
			jbool("close_wait_seen", cw_seen);
		jbool("client_tw", tw);
		break;
	case M_SF:
		jll("server_close_ns", sclose);
		jll("client_eof_ns", ceof);
		jll("client_close_ns", cclose);
		jbool("server_tw", tw);
		break;
	default:
		if (mode == M_UNREAD)
			jll("client_unread", unread);
		jll("client_close_ns", cclose);
		jstr("server_read", sread);
		jll("server_close_ns", sclose);
		jbool("client_tw", tw);
		break;
	}
	jend();
	free(sread);
}

/* ---- simultaneous close ---- */

/* run "nft -f -" on script (n bytes), after removing a stale table */
static void nft_load(const char *script, int n)
{
	static char a0[] = "nft", a1[] = "-f", a2[] = "/dev/stdin";
	char *argv[] = { a0, a1, a2, NULL };
	int p[2], rc;

	if (pipe2(p, O_CLOEXEC))
		die("pipe: %s", strerror(errno));
	if (write(p[1], script, (size_t)n) != n)
		die("pipe write: %s", strerror(errno));
	close(p[1]);
	g_nft_active = 1;
	rc = nft_exec(argv, p[0], 0);
	close(p[0]);
	if (rc)
		die("nft -f failed (rc %d)", rc);
}

static void nft_setup(int port)
{
	char script[768];
	int n;

	if (!g_nft_path[0])
		die("nft binary not found");
	nft_delete_table(1); /* stale table from an earlier crash */
	n = snprintf(script, sizeof(script),
		     "table inet " NFT_TABLE " {\n"
		     "  chain out {\n"
		     "    type filter hook output priority 0; policy accept;\n"
		     "    tcp dport %d tcp flags & fin == fin counter drop\n"
		     "    tcp sport %d tcp flags & fin == fin counter drop\n"
		     "  }\n"
		     "}\n", port, port);
	nft_load(script, n);
}

static int cap_open(void)
{
	struct sockaddr_ll sll;
	int sz = 1 << 20;
	int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
			htons(ETH_P_ALL));

	if (fd < 0)
		die("AF_PACKET socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = (int)if_nametoindex("lo");
	if (!sll.sll_ifindex || bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
		die("bind AF_PACKET to lo: %s", strerror(errno));
	return fd;
}

/*
 * Read the captured segments of our connection.  On lo every frame is seen
 * twice by a packet socket (PACKET_OUTGOING on transmit, PACKET_HOST on
 * receive); keep only the transmit copies.
 */
static int cap_read(int fd, struct seg *out, int max)
{
	int n = 0;

	for (;;) {
		uint8_t buf[2048];
		struct sockaddr_ll from;
		struct seg s;
		struct timespec ts = { 0, 0 };
		ssize_t k = recvfrom(fd, buf, sizeof(buf), 0,
				     (struct sockaddr *)&from,
				     &(socklen_t){ sizeof(from) });

		if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			die("capture recv: %s", strerror(errno));
		}
		if (!parse_ip_tcp(buf, (size_t)k, &s))
			continue;
		if (s.sport != g_port && s.dport != g_port)
			continue;
		if (g_debug && ioctl(fd, SIOCGSTAMPNS, &ts) == 0)
			fprintf(stderr, "[cap] t=%lld.%09ld ", (long long)ts.tv_sec,
				ts.tv_nsec);
		dbg_seg("cap", &s, from.sll_pkttype);
		if (from.sll_pkttype != PACKET_OUTGOING)
			continue;
		if (n < max)
			out[n++] = s;
	}
	return n;
}

/*
 * Did the endpoint with local port a (peer port b) pass through CLOSING?
 * That happens iff, while its own FIN is unacknowledged (FIN_WAIT1), it
 * receives the peer's FIN: i.e. the first segment b->a that carries a FIN
 * or acknowledges a's FIN is a FIN that does not acknowledge a's FIN.
 */
static int went_closing(const struct seg *s, int n, int a, int b)
{
	uint32_t fin_end = 0;
	int have = 0;

	for (int i = 0; i < n && !have; i++)
		if (s[i].sport == a && s[i].dport == b && (s[i].flags & F_FIN)) {
			fin_end = s[i].seq + s[i].plen + 1;
			have = 1;
		}
	if (!have)
		return 0;
	for (int i = 0; i < n; i++) {
		int acks;

		if (s[i].sport != b || s[i].dport != a)
			continue;
		acks = (s[i].flags & F_ACK) && (int32_t)(s[i].ack - fin_end) >= 0;
		if (s[i].flags & F_FIN)
			return !acks;
		if (acks)
			return 0;
	}
	return 0;
}

static void scen_simultaneous(void)
{
	struct role_cfg sc = mkcfg(M_SIM, 1), cc = mkcfg(M_SIM, 1);
	struct chan *srv, *cli;
	struct seg segs[256];
	long long cshut, sshut, tdel, cclose, sclose, crto, srto, tick, dj;
	long long edge, edge2, drop_ms;
	struct chan *first, *second;
	char cmd[64];
	int cpu = sched_getcpu(), sport, cport, cap, nseg, rc;
	int cfin, sfin, cclosing, sclosing, ctw, stw;
	pid_t spid, cpid;

	/*
	 * Both ends on one CPU: their FIN retransmit timers then sit in the
	 * same timer wheel bucket and fire in the same softirq run, so both
	 * retransmitted FINs are queued on lo before either is processed.
	 */
	sc.cpu = cc.cpu = cpu;
	srv = spawn("server", server_main, &sc);
	spid = srv->pid;
	sport = (int)kv_ll(srv, "ready", STEP_MS);
	cli = spawn("client", client_main, &cc);
	cpid = cli->pid;
	cport = (int)kv_ll(cli, "client_port", STEP_MS);
	kv_ll(srv, "accepted", STEP_MS);
	kv_ll(srv, "srv_data", STEP_MS);
	sleep_ms(50); /* let delayed ACKs of the data go out */

	cmd_send(cli, "info");
	cmd_send(srv, "info");
	crto = kv_ll(cli, "rto_us", STEP_MS);
	srto = kv_ll(srv, "rto_us", STEP_MS);
	tick = tick_ns();
	/* rto difference in jiffies: the side with the longer RTO goes first */
	dj = (crto - srto) * 1000;
	dj = (dj + (dj >= 0 ? tick / 2 : -tick / 2)) / tick;
	first = dj >= 0 ? cli : srv;
	second = dj >= 0 ? srv : cli;

	cap = cap_open();
	nft_setup(sport);
	/* both get absolute targets: no relay latency between the two */
	edge = coarse_ns() + 25 * tick;
	snprintf(cmd, sizeof(cmd), "shut %lld", edge);
	cmd_send(first, cmd);
	snprintf(cmd, sizeof(cmd), "shut %lld", edge + (dj >= 0 ? dj : -dj) * tick);
	cmd_send(second, cmd);
	edge = kv_ll(first, "shut_edge", STEP_MS);
	edge2 = kv_ll(second, "shut_edge", STEP_MS);
	cshut = kv_ll(cli, "shut_ns", STEP_MS);
	sshut = kv_ll(srv, "shut_ns", STEP_MS);
	if (g_debug)
		fprintf(stderr, "[sim] rto c=%lld s=%lld us, tick=%lld ns, dj=%lld, "
			"edges %lld -> %lld (%+lld ticks)\n", crto, srto, tick, dj,
			edge, edge2, (edge2 - edge + tick / 2) / tick);
	/* drop window: ~100 ms, but well before the first retransmission */
	drop_ms = (crto < srto ? crto : srto) / 2000;
	sleep_ms(drop_ms > 100 ? 100 : drop_ms < 1 ? 1 : drop_ms);
	tdel = now_ns();
	rc = nft_delete_table(0);
	g_nft_active = 0;
	if (rc)
		die("nft delete table failed (rc %d)", rc);
	/* the retransmitted FINs cross ~200 ms after shutdown; wait for both
	 * TIME_WAIT minisocks (sock_diag does not lock TIME_WAIT sockets) */
	sleep_ms(300);
	ctw = diag_wait(cport, sport, ST_TIME_WAIT, 3000, NULL);
	stw = diag_wait(sport, cport, ST_TIME_WAIT, 1000, NULL);
	cmd_send(cli, "close");
	cmd_send(srv, "close");
	cfin = (int)kv_ll(cli, "final_state", STEP_MS);
	sfin = (int)kv_ll(srv, "final_state", STEP_MS);
	cclose = kv_ll(cli, "client_close_ns", STEP_MS);
	sclose = kv_ll(srv, "server_close_ns", STEP_MS);
	if (cfin != ST_CLOSE || sfin != ST_CLOSE)
		die("sockets did not finish closing (client state %d, server state %d)",
		    cfin, sfin);
	nseg = cap_read(cap, segs, (int)(sizeof(segs) / sizeof(segs[0])));
	close(cap);
	cclosing = went_closing(segs, nseg, cport, sport);
	sclosing = went_closing(segs, nseg, sport, cport);
	finish_children();

	jbegin();
	jcommon(cpid, spid, cport, sport);
	jll("client_shut_ns", cshut);
	jll("server_shut_ns", sshut);
	jll("client_rto_us", crto);
	jll("server_rto_us", srto);
	jll("shut_offset_ticks", (edge2 - edge + tick / 2) / tick);
	jbool("shut_aligned", (edge2 - edge + tick / 2) / tick == (dj >= 0 ? dj : -dj));
	jll("nft_deleted_ns", tdel);
	jll("client_close_ns", cclose);
	jll("server_close_ns", sclose);
	jbool("client_closing", cclosing);
	jbool("server_closing", sclosing);
	jbool("client_tw", ctw);
	jbool("server_tw", stw);
	jbool("ok_closing", cclosing && sclosing && ctw && stw);
	jend();
}

/* ---- TIME_WAIT reuse ---- */

static void scen_tw_reuse(void)
{
	struct role_cfg sc = mkcfg(M_CF, 2), cc = mkcfg(M_CF, 1);
	const char *sysctl = "/proc/sys/net/ipv4/tcp_tw_reuse";
	struct chan *srv, *a, *b;
	long long aclose, bclose, sclose1, sclose2, rconn, rconned;
	int sport, aport, bport, tw1, tw2, reuse;
	pid_t spid, apid, bpid;

	if (g_set_sysctl) {
		FILE *f = fopen(sysctl, "w");

		if (!f || fputs("1\n", f) < 0 || fclose(f))
			die("cannot set %s: %s", sysctl, strerror(errno));
	}
	/* only reported: for an explicitly bound port the kernel reuses a
	 * timestamped TIME_WAIT even with tcp_tw_reuse=0 (twp == NULL path) */
	reuse = read_sysctl_int(sysctl);
	cc.bind_port = g_cport;

	srv = spawn("server", server_main, &sc);
	spid = srv->pid;
	sport = (int)kv_ll(srv, "ready", STEP_MS);
	a = spawn("client A", client_main, &cc);
	apid = a->pid;
	aport = (int)kv_ll(a, "client_port", STEP_MS);
	kv_ll(srv, "accepted", STEP_MS);
	kv_ll(srv, "srv_data", STEP_MS);
	cmd_send(a, "close");
	aclose = kv_ll(a, "client_close_ns", STEP_MS);
	kv_ll(srv, "server_eof_ns", STEP_MS);
	sclose1 = kv_ll(srv, "server_close_ns", STEP_MS);
	tw1 = diag_wait(aport, sport, ST_TIME_WAIT, 2000, NULL);
	if (!tw1)
		die("first connection did not leave a TIME_WAIT on port %d", aport);

	sleep_ms(g_gap);
	if (diag_state(aport, sport) != ST_TIME_WAIT)
		die("TIME_WAIT on port %d vanished during the gap", aport);

	b = spawn("client B", client_main, &cc);
	bpid = b->pid;
	bport = (int)kv_ll(b, "client_port", STEP_MS);
	rconn = kv_ll(b, "connect_ns", STEP_MS);
	rconned = kv_ll(b, "connected_ns", STEP_MS);
	if (bport != aport)
		die("second connection got port %d, not %d", bport, aport);
	kv_ll(srv, "accepted", STEP_MS);
	kv_ll(srv, "srv_data", STEP_MS);
	cmd_send(b, "close");
	bclose = kv_ll(b, "client_close_ns", STEP_MS);
	kv_ll(srv, "server_eof_ns", STEP_MS);
	sclose2 = kv_ll(srv, "server_close_ns", STEP_MS);
	tw2 = diag_wait(bport, sport, ST_TIME_WAIT, 2000, NULL);
	finish_children();

	jbegin();
	jcommon(apid, spid, aport, sport);
	jll("first_pid", apid);
	jll("reuse_pid", bpid);
	jll("tcp_tw_reuse", reuse);
	jll("gap_ms", g_gap);
	jll("first_close_ns", aclose);
	jll("first_server_close_ns", sclose1);
	jbool("tw_before_reuse", tw1);
	jll("reuse_connect_ns", rconn);
	jll("reuse_connected_ns", rconned);
	jbool("reuse_ok", 1);
	jll("reuse_close_ns", bclose);
	jll("reuse_server_close_ns", sclose2);
	jbool("reuse_tw", tw2);
	jend();
}

/* ---- TIME_WAIT assassination by RST ---- */

#define INJ_SEQ 0x1badc0deu
#define INJ_ACK 0x0badf00du

static void scen_tw_rst(void)
{
	struct role_cfg sc = mkcfg(M_CF, 1), cc = mkcfg(M_CF, 1);
	struct chan *srv, *cli;
	struct sockaddr_storage la, da;
	socklen_t ll, dl;
	uint8_t th[20], ph[40];
	uint32_t sum;
	size_t phl;
	long long cclose, sclose, tsent, tgone = 0, deadline;
	int sport, cport, rs, gone = 0, ack_seen = 0, rst_seen = 0, match = 0;
	uint32_t tw_ack = 0;
	pid_t spid, cpid;

	srv = spawn("server", server_main, &sc);
	spid = srv->pid;
	sport = (int)kv_ll(srv, "ready", STEP_MS);
	cli = spawn("client", client_main, &cc);
	cpid = cli->pid;
	cport = (int)kv_ll(cli, "client_port", STEP_MS);
	kv_ll(srv, "accepted", STEP_MS);
	kv_ll(srv, "srv_data", STEP_MS);
	cmd_send(cli, "close");
	cclose = kv_ll(cli, "client_close_ns", STEP_MS);
	kv_ll(srv, "server_eof_ns", STEP_MS);
	sclose = kv_ll(srv, "server_close_ns", STEP_MS);
	if (!diag_wait(cport, sport, ST_TIME_WAIT, 2000, NULL))
		die("client side did not reach TIME_WAIT");

	/* bare ACK S:sport -> C:cport, out of window, no options */
	memset(th, 0, sizeof(th));
	put16(th, (uint32_t)sport);
	put16(th + 2, (uint32_t)cport);
	put32(th + 4, INJ_SEQ);
	put32(th + 8, INJ_ACK);
	th[12] = 5 << 4;
	th[13] = F_ACK;
	put16(th + 14, 1024);
	memset(ph, 0, sizeof(ph));
	if (g_fam == AF_INET) {
		put32(ph, INADDR_LOOPBACK);
		put32(ph + 4, INADDR_LOOPBACK);
		ph[9] = IPPROTO_TCP;
		put16(ph + 10, sizeof(th));
		phl = 12;
	} else {
		memcpy(ph, &in6addr_loopback, 16);
		memcpy(ph + 16, &in6addr_loopback, 16);
		put32(ph + 32, sizeof(th));
		ph[39] = IPPROTO_TCP;
		phl = 40;
	}
	sum = csum_add(0, ph, phl);
	sum = csum_add(sum, th, sizeof(th));
	put16(th + 16, csum_fold(sum));

	rs = socket(g_fam, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP);
	if (rs < 0)
		die("raw socket: %s", strerror(errno));
	ll = mkaddr(&la, 0);
	dl = mkaddr(&da, 0);
	if (bind(rs, (struct sockaddr *)&la, ll) < 0)
		die("bind raw socket: %s", strerror(errno));
	tsent = now_ns();
	if (sendto(rs, th, sizeof(th), 0, (struct sockaddr *)&da, dl) != sizeof(th))
		die("raw sendto: %s", strerror(errno));

	deadline = tsent + 1000000000LL;
	while (now_ns() < deadline && !(gone && rst_seen)) {
		uint8_t buf[2048];
		ssize_t k;
		struct seg s;
		int ok;

		wait_fd(rs, POLLIN, 5);
		while ((k = recv(rs, buf, sizeof(buf), 0)) > 0) {
			ok = g_fam == AF_INET ? parse_ip_tcp(buf, (size_t)k, &s)
					      : parse_tcp(buf, (size_t)k, &s);
			if (!ok)
				continue;
			if (s.sport == cport && s.dport == sport &&
			    (s.flags & F_ACK) && !(s.flags & F_RST) && !ack_seen) {
				ack_seen = 1;
				tw_ack = s.ack;
				dbg_seg("tw-ack", &s, 0);
			} else if (s.sport == sport && s.dport == cport &&
				   (s.flags & F_RST) && !rst_seen) {
				rst_seen = 1;
				match = ack_seen && s.seq == tw_ack;
				dbg_seg("rst", &s, 0);
			} else {
				dbg_seg("raw", &s, 0);
			}
		}
		if (!gone && diag_state(cport, sport) != ST_TIME_WAIT) {
			gone = 1;
			tgone = now_ns();
		}
	}
	close(rs);
	finish_children();

	jbegin();
	jcommon(cpid, spid, cport, sport);
	jll("client_close_ns", cclose);
	jll("server_close_ns", sclose);
	jll("rst_sent_ns", tsent);
	jbool("tw_ack_seen", ack_seen);
	jbool("rst_seen", rst_seen);
	jbool("rst_seq_match", match);
	jbool("tw_gone", gone);
	jll("tw_gone_ns", tgone);
	jend();
}

/* ---- two sequential client-first connections ---- */

static void scen_two_closes(void)
{
	struct role_cfg sc = mkcfg(M_CF, 2), cc = mkcfg(M_CF, 2);
	struct chan *srv, *cli;
	long long cclose[2], sclose[2];
	int sport, cport[2], tw[2];
	pid_t spid, cpid;

	srv = spawn("server", server_main, &sc);
	spid = srv->pid;
	sport = (int)kv_ll(srv, "ready", STEP_MS);
	cli = spawn("client", client_main, &cc);
	cpid = cli->pid;
	for (int i = 0; i < 2; i++) {
		if (i)
			cmd_send(cli, "next");
		cport[i] = (int)kv_ll(cli, "client_port", STEP_MS);
		kv_ll(srv, "accepted", STEP_MS);
		kv_ll(srv, "srv_data", STEP_MS);
		cmd_send(cli, "close");
		cclose[i] = kv_ll(cli, "client_close_ns", STEP_MS);
		kv_ll(srv, "server_eof_ns", STEP_MS);
		sclose[i] = kv_ll(srv, "server_close_ns", STEP_MS);
		tw[i] = diag_wait(cport[i], sport, ST_TIME_WAIT, 500, NULL);
	}
	finish_children();

	jbegin();
	jcommon(cpid, spid, cport[0], sport);
	jkey("client_ports");
	jraw("[%d,%d]", cport[0], cport[1]);
	jkey("client_close_ns");
	jraw("[%lld,%lld]", cclose[0], cclose[1]);
	jkey("server_close_ns");
	jraw("[%lld,%lld]", sclose[0], sclose[1]);
	jkey("tw_seen");
	jraw("[%s,%s]", tw[0] ? "true" : "false", tw[1] ? "true" : "false");
	jend();
}

/* ---- reuse-churn: ephemeral-port connections that must reuse TIME_WAIT ---- */

/*
 * The server listens on --addr:--port and serves one connection per "conn"
 * command: read the 5 bytes, read to EOF, close.  The client, on each
 * "connect" command, connect()s to --addr:--port WITHOUT bind(), so the
 * kernel picks the ephemeral port (__inet_hash_connect) and tcp_tw_reuse /
 * tcp_tw_reuse_delay decide whether a TIME_WAIT 4-tuple may be taken over.
 * connect() failing with EADDRNOTAVAIL is reported, not fatal.
 */

#define CHURN_MAX_COUNT 1000

static socklen_t churn_addr(struct sockaddr_storage *ss, int port)
{
	socklen_t l = mkaddr(ss, port);

	if (g_fam == AF_INET)
		((struct sockaddr_in *)ss)->sin_addr = g_addr4;
	else
		((struct sockaddr_in6 *)ss)->sin6_addr = g_addr6;
	return l;
}

static void churn_server(const void *arg)
{
	struct sockaddr_storage ss;
	socklen_t l = churn_addr(&ss, g_port);
	int one = 1, lfd, fd, r;
	char line[128];
	long long t;

	(void)arg;
	lfd = socket(g_fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket: %s", strerror(errno));
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&ss, l) < 0)
		die("bind listener %s port %d: %s", g_addr_str, g_port, strerror(errno));
	if (listen(lfd, 16) < 0)
		die("listen: %s", strerror(errno));
	rep("ready", "%d", sock_port(lfd, 0));
	for (int i = 0; i <= CHURN_MAX_COUNT; i++) {
		cmd_get(line, sizeof(line), (int)(g_alarm + 5) * 1000);
		if (!strcmp(line, "exit"))
			break;
		if (strcmp(line, "conn"))
			die("expected 'conn' or 'exit', got '%s'", line);
		fd = do_accept(lfd, STEP_MS);
		rep("accepted", "%d", sock_port(fd, 1));
		read_exact(fd, sizeof(hello) - 1, 5000);
		r = read_to_eof(fd, STEP_MS);
		if (r)
			die("server expected EOF, got %s", strerror(r));
		t = now_ns();
		close(fd);
		rep("server_close_ns", "%lld", t);
	}
	close(lfd);
}

static void churn_client(const void *arg)
{
	struct sockaddr_storage ss;
	socklen_t l, el;
	char line[128];
	long long t;
	int fd, err, fl;

	(void)arg;
	for (int i = 0; i <= CHURN_MAX_COUNT; i++) {
		cmd_get(line, sizeof(line), (int)(g_alarm + 5) * 1000);
		if (!strcmp(line, "exit"))
			break;
		if (strcmp(line, "connect"))
			die("expected 'connect' or 'exit', got '%s'", line);
		fd = socket(g_fam, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			die("socket: %s", strerror(errno));
		l = churn_addr(&ss, g_port);
		t = now_ns();
		err = 0;
		if (connect(fd, (struct sockaddr *)&ss, l) < 0) {
			err = errno;
			if (err == EINPROGRESS) {
				el = sizeof(err);
				if (!wait_fd(fd, POLLOUT, 5000))
					die("connect to %s port %d: timeout", g_addr_str, g_port);
				if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
					die("SO_ERROR: %s", strerror(errno));
			}
		}
		if (err == EADDRNOTAVAIL) {
			close(fd);
			rep("connect", "eaddrnotavail %lld", t);
			continue;
		}
		if (err)
			die("connect to %s port %d: %s", g_addr_str, g_port, strerror(err));
		fl = fcntl(fd, F_GETFL);
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
		rep("connect", "ok %d %lld", sock_port(fd, 0), t);
		write_all(fd, hello, sizeof(hello) - 1);
		cmd_wait("close", STEP_MS);
		t = now_ns();
		close(fd);
		rep("client_close_ns", "%lld", t);
	}
}

static void scen_reuse_churn(void)
{
	static int ports[CHURN_MAX_COUNT];
	static long long tw_start[CHURN_MAX_COUNT]; /* server close, per port */
	struct chan *srv, *cli;
	long long start = now_ns(), deadline, youngest = -1, tconn, sclose;
	int sport, nports = 0, ok = 0, fail = 0, attempts = 0, timed_out = 0;
	int reuses = 0, tw_missing = 0, port, j, peer;
	pid_t spid, cpid;
	char *v;

	deadline = start + g_max_seconds * 1000000000LL;
	srv = spawn("server", churn_server, NULL);
	spid = srv->pid;
	sport = (int)kv_ll(srv, "ready", STEP_MS);
	cli = spawn("client", churn_client, NULL);
	cpid = cli->pid;

	for (int i = 0; i < g_count; i++) {
		if (i) {
			if (deadline - now_ns() <= g_gap * 1000000LL) {
				timed_out = 1;
				break;
			}
			sleep_ms(g_gap);
		}
		if (now_ns() >= deadline) {
			timed_out = 1;
			break;
		}
		attempts++;
		cmd_send(cli, "connect");
		v = kv_get(cli, "connect", STEP_MS);
		if (!strncmp(v, "eaddrnotavail ", 14)) {
			fail++;
			free(v);
			continue;
		}
		if (sscanf(v, "ok %d %lld", &port, &tconn) != 2)
			die("bad connect report '%s'", v);
		free(v);
		for (j = 0; j < nports && ports[j] != port; j++)
			;
		if (j < nports) {
			/* same 4-tuple as an earlier connection: TIME_WAIT reused */
			reuses++;
			if (youngest < 0 || tconn - tw_start[j] < youngest)
				youngest = tconn - tw_start[j];
		} else {
			ports[nports++] = port;
		}
		cmd_send(srv, "conn");
		peer = (int)kv_ll(srv, "accepted", STEP_MS);
		if (peer != port)
			die("server accepted port %d, client has port %d", peer, port);
		cmd_send(cli, "close");
		kv_ll(cli, "client_close_ns", STEP_MS);
		sclose = kv_ll(srv, "server_close_ns", STEP_MS);
		tw_start[j] = sclose;
		if (!diag_wait(port, sport, ST_TIME_WAIT, 1000, NULL))
			tw_missing++;
		ok++;
	}
	finish_children();

	jbegin();
	jll("client_pid", cpid);
	jll("server_pid", spid);
	jstr("server_addr", g_addr_str);
	jll("server_port", sport);
	jll("gap_ms", g_gap);
	jll("attempts", attempts);
	jll("connects_ok", ok);
	jll("eaddrnotavail", fail);
	jkey("ports");
	jraw("[");
	for (j = 0; j < nports; j++)
		jraw("%s%d", j ? "," : "", ports[j]);
	jraw("]");
	jll("reuses", reuses);
	jkey("youngest_reuse_gap_ns");
	if (youngest < 0)
		jraw("null");
	else
		jraw("%lld", youngest);
	jll("tw_missing", tw_missing);
	jbool("timed_out", timed_out);
	jll("elapsed_ns", now_ns() - start);
	jend();
}

/* ---- helpers for the scenarios below ---- */

static const char *state_name(int st)
{
	static const char *const n[] = {
		"NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1",
		"FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK",
		"LISTEN", "CLOSING",
	};

	return st >= 0 && st <= ST_CLOSING ? n[st] : "?";
}

static void jnull(const char *k)
{
	jkey(k);
	jraw("null");
}

/* a state from diag_state() as a JSON string, null for "no socket" */
static void jstate(const char *k, int st)
{
	if (st)
		jstr(k, state_name(st));
	else
		jnull(k);
}

/* parent: reap pid (a child, or a grandchild we adopted as subreaper) */
static int wait_pid(pid_t pid, int timeout_ms, const char *what)
{
	long long deadline = now_ns() + timeout_ms * 1000000LL;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return st;
		if (r < 0 && errno != EINTR)
			die("waitpid %s (%d): %s", what, (int)pid, strerror(errno));
		if (now_ns() > deadline)
			die("%s (pid %d) did not exit in time", what, (int)pid);
		sleep_ms(5);
	}
}

/* parent: reap a spawned child that exits on its own; must exit 0 */
static long long reap_chan(struct chan *c, int timeout_ms)
{
	int st = wait_pid(c->pid, timeout_ms, c->name);

	c->pid = -1;
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		die("%s process failed (status 0x%x)", c->name, st);
	return now_ns();
}

static void set_reuseaddr(int fd)
{
	int one = 1;

	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)))
		die("SO_REUSEADDR: %s", strerror(errno));
}

/* ---- shutdown, killed, exit, linger-wait ---- */

enum xmode { X_SHUT, X_KILLED, X_EXIT, X_LINGER };

/*
 * How long a lingering close() may block: the linger timeout is a timer
 * that the timer wheel may fire up to 1/8 late (seen: 3 s -> 3.24 s).
 */
#define LINGER_WAIT_MS (STEP_MS + g_linger * 1125)

static void x_server(const void *arg)
{
	enum xmode m = *(const enum xmode *)arg;
	char ten[10];
	long long t;
	int lfd, fd, r;

	lfd = mk_listener(g_port);
	rep("ready", "%d", sock_port(lfd, 0));
	fd = do_accept(lfd, STEP_MS);
	rep("accepted", "%d", sock_port(fd, 1));
	read_exact(fd, sizeof(hello) - 1, 5000);
	rep("srv_data", "%d", (int)sizeof(hello) - 1);
	r = read_to_eof(fd, STEP_MS);
	t = now_ns();
	if (r && (m == X_SHUT || m == X_LINGER))
		die("server expected EOF, got %s", strerror(r));
	rep("server_read", "%s", r == 0 ? "eof" :
	    r == ECONNRESET ? "reset" : strerror(r));
	rep("server_eof_ns", "%lld", t);
	if (m == X_SHUT) {
		/* half-closed: we can still send, the client still receives */
		cmd_wait("send", STEP_MS);
		memset(ten, 'y', sizeof(ten));
		write_all(fd, ten, sizeof(ten));
		rep("srv_sent", "%d", (int)sizeof(ten));
	}
	if (m == X_SHUT || m == X_LINGER)
		cmd_wait("close", LINGER_WAIT_MS);
	t = now_ns();
	close(fd);
	rep("server_close_ns", "%lld", t);
	cmd_wait("exit", (int)(g_alarm + 5) * 1000);
	close(lfd);
}

static int is_core_signal(int sig)
{
	switch (sig) {
	case SIGQUIT: case SIGILL: case SIGTRAP: case SIGABRT: case SIGBUS:
	case SIGFPE: case SIGSEGV: case SIGXCPU: case SIGXFSZ: case SIGSYS:
		return 1;
	}
	return 0;
}

static void x_client(const void *arg)
{
	enum xmode m = *(const enum xmode *)arg;
	struct linger lg = { 1, g_linger };
	long long t, t2;
	int fd, r;

	if (m == X_KILLED) {
		struct sigaction sa;
		struct rlimit rl = { 0, 0 };

		/* die of the signal itself, not of our SIGTERM/SIGALRM handler */
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		sigaction(g_signal, &sa, NULL);
		if (is_core_signal(g_signal)) {
			/* no core file, not even through a core_pattern pipe */
			setrlimit(RLIMIT_CORE, &rl);
			prctl(PR_SET_DUMPABLE, 0);
		}
	}
	fd = do_connect(0, &t, &t2);
	rep("client_port", "%d", sock_port(fd, 0));
	write_all(fd, hello, sizeof(hello) - 1);
	switch (m) {
	case X_SHUT:
		cmd_wait("shut", STEP_MS);
		t = now_ns();
		if (shutdown(fd, SHUT_WR) < 0)
			die("shutdown: %s", strerror(errno));
		rep("client_shutdown_ns", "%lld", t);
		read_exact(fd, 10, STEP_MS);
		rep("client_read", "%d", 10);
		r = read_to_eof(fd, STEP_MS);
		t = now_ns();
		if (r)
			die("client expected EOF, got %s", strerror(r));
		rep("client_eof_ns", "%lld", t);
		cmd_wait("close", STEP_MS);
		t = now_ns();
		close(fd);
		rep("client_close_ns", "%lld", t);
		break;
	case X_KILLED:
		rep("blocked", "%d", (int)getpid());
		for (;;)
			pause(); /* until the parent's signal (or the alarm) */
	case X_EXIT:
		cmd_wait("exit", STEP_MS);
		t = now_ns();
		rep("exit_ns", "%lld", t);
		exit(0); /* the socket is still open: the kernel closes it */
	case X_LINGER:
		if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)))
			die("SO_LINGER: %s", strerror(errno));
		cmd_wait("close", STEP_MS);
		t = now_ns();
		close(fd);
		t2 = now_ns();
		rep("close_call_ns", "%lld", t);
		rep("close_return_ns", "%lld", t2);
		break;
	}
	cmd_wait("exit", (int)(g_alarm + 5) * 1000);
}

static void scen_shutdown(void)
{
	static const enum xmode m = X_SHUT;
	struct chan *srv, *cli;
	long long cshut, seof, sclose, ceof, cclose;
	int sport, cport, cst, sst, cread, twb, tw;
	pid_t spid, cpid;

	srv = spawn("server", x_server, &m);
	spid = srv->pid;
	sport = (int)kv_ll(srv, "ready", STEP_MS);
	cli = spawn("client", x_client, &m);
	cpid = cli->pid;
	cport = (int)kv_ll(cli, "client_port", STEP_MS);
	kv_ll(srv, "accepted", STEP_MS);
	kv_ll(srv, "srv_data", STEP_MS);
	cmd_send(cli, "shut");
	cshut = kv_ll(cli, "client_shutdown_ns", STEP_MS);
	seof = kv_ll(srv, "server_eof_ns", STEP_MS);
	diag_wait(cport, sport, ST_FIN_WAIT2, 1000, NULL);
	cst = diag_state(cport, sport);
	sst = diag_state(sport, cport);
	cmd_send(srv, "send");
	kv_ll(srv, "srv_sent", STEP_MS);
	cread = (int)kv_ll(cli, "client_read", STEP_MS);
	cmd_send(srv, "close");
	sclose = kv_ll(srv, "server_close_ns", STEP_MS);
	ceof = kv_ll(cli, "client_eof_ns", STEP_MS);
	twb = diag_wait(cport, sport, ST_TIME_WAIT, 1000, NULL);
	cmd_send(cli, "close");
	cclose = kv_ll(cli, "client_close_ns", STEP_MS);
	tw = diag_wait(cport, sport, ST_TIME_WAIT, 2000, NULL);
	finish_children();

	jbegin();
	jcommon(cpid, spid, cport, sport);
	jll("client_shutdown_ns", cshut);
	jll("server_eof_ns", seof);
	jstate("client_state_after_shutdown", cst);
	jstate("server_state_after_shutdown", sst);
	jll("client_read", cread);
	jll("server_close_ns", sclose);
	jll("client_eof_ns", ceof);
	jbool("tw_before_close", twb);
	jll("client_close_ns", cclose);
	jbool("client_tw", tw);
	jend();
}

static void scen_killed(void)
{
	static const enum xmode m = X_KILLED;
	struct chan *srv, *cli;
	long long tkill, seof, sclose;
	int sport, cport, st, tw;
	pid_t spid, cpid;
	char *sread;

	srv = spawn("server", x_server, &m);
	spid = srv->pid;
	sport = (int)kv_ll(srv, "ready", STEP_MS);
	cli = spawn("client", x_client, &m);
	cpid = cli->pid;
	cport = (int)kv_ll(cli, "client_port", STEP_MS);
	kv_ll(srv, "accepted", STEP_MS);
	kv_ll(srv, "srv_data", STEP_MS);
	kv_ll(cli, "blocked", STEP_MS);
	sleep_ms(20); /* let it reach pause() */
	cli->exit_sent = 1; /* its end of the pipe closing is expected now */
	tkill = now_ns();
	if (kill(cpid, g_signal) < 0)
		die("kill(%d, %d): %s", (int)cpid, g_signal, strerror(errno));
	st = wait_pid(cpid, 5000, "client");
	cli->pid = -1;
	if (!WIFSIGNALED(st) || WTERMSIG(st) != g_signal)
		die("client did not die of signal %d (status 0x%x)", g_signal, st);
	sread = kv_get(srv, "server_read", STEP_MS);
	seof = kv_ll(srv, "server_eof_ns", STEP_MS);
	sclose = kv_ll(srv, "server_close_ns", STEP_MS);
	tw = diag_wait(cport, sport, ST_TIME_WAIT, 2000, NULL);
	finish_children();

	jbegin();
	jcommon(cpid, spid, cport, sport);
	jll("killed_pid", cpid);
	jll("signal", g_signal);
	jll("kill_ns", tkill);
	jstr("server_read", sread);
	jll("server_eof_ns", seof);
	jll("server_close_ns", sclose);
	jbool("client_tw", tw);
	jend();
	free(sread);
}

static void scen_exit(void)
{
	static const enum xmode m = X_EXIT;
	struct chan *srv, *cli;
	long long texit, seof, sclose;
	int sport, cport, tw;
	pid_t spid, cpid;
	char *sread;

	srv = spawn("server", x_server, &m);
	spid = srv->pid;
	sport = (int)kv_ll(srv, "ready", STEP_MS);
	cli = spawn("client", x_client, &m);
	cpid = cli->pid;
	cport = (int)kv_ll(cli, "client_port", STEP_MS);
	kv_ll(srv, "accepted", STEP_MS);
	kv_ll(srv, "srv_data", STEP_MS);
	cmd_send(cli, "exit");
	texit = kv_ll(cli, "exit_ns", STEP_MS);
	sread = kv_get(srv, "server_read", STEP_MS);
	seof = kv_ll(srv, "server_eof_ns", STEP_MS);
	sclose = kv_ll(srv, "server_close_ns", STEP_MS);
	tw = diag_wait(cport, sport, ST_TIME_WAIT, 2000, NULL);
	finish_children();

	jbegin();
	jcommon(cpid, spid, cport, sport);
	jll("exit_ns", texit);
	jstr("server_read", sread);
	jll("server_eof_ns", seof);
	jll("server_close_ns", sclose);
	jbool("client_tw", tw);
	jend();
	free(sread);
}

/* linger-wait --peer-silent: drop every segment server port -> client port */
static void nft_setup_drop(int sport, int cport)
{
	char script[512];
	int n;

	if (!g_nft_path[0])
		die("nft binary not found");
	nft_delete_table(1); /* stale table from an earlier crash */
	n = snprintf(script, sizeof(script),
		     "table inet %s {\n"
		     "  chain out {\n"
		     "    type filter hook output priority 0; policy accept;\n"
		     "    tcp sport %d tcp dport %d counter drop\n"
		     "  }\n"
		     "}\n", g_nft_table, sport, cport);
	nft_load(script, n);
}

static void scen_linger_wait(void)
{
	static const enum xmode m = X_LINGER;
	struct chan *srv, *cli;
	long long tcall, tret, seof, sclose, tdel = 0;
	int sport, cport, st_after, tw, rc;
	pid_t spid, cpid;

	srv = spawn("server", x_server, &m);
	spid = srv->pid;
	sport = (int)kv_ll(srv, "ready", STEP_MS);
	cli = spawn("client", x_client, &m);
	cpid = cli->pid;
	cport = (int)kv_ll(cli, "client_port", STEP_MS);
	kv_ll(srv, "accepted", STEP_MS);
	kv_ll(srv, "srv_data", STEP_MS);
	if (g_peer_silent) {
		snprintf(g_nft_table, sizeof(g_nft_table), "ctscen_linger");
		sleep_ms(50); /* let the ACK of the data go out first */
		nft_setup_drop(sport, cport);
	}
	cmd_send(cli, "close");
	/* the FIN reaches the server at once; only its ACK is dropped */
	seof = kv_ll(srv, "server_eof_ns", STEP_MS);
	tcall = kv_ll(cli, "close_call_ns", LINGER_WAIT_MS);
	tret = kv_ll(cli, "close_return_ns", STEP_MS);
	st_after = diag_state(cport, sport);
	if (g_peer_silent) {
		tdel = now_ns();
		rc = nft_delete_table(0);
		g_nft_active = 0;
		if (rc)
			die("nft delete table failed (rc %d)", rc);
	}
	/* the server's FIN also acknowledges the client's FIN */
	cmd_send(srv, "close");
	sclose = kv_ll(srv, "server_close_ns", STEP_MS);
	tw = diag_wait(cport, sport, ST_TIME_WAIT, 3000, NULL);
	finish_children();

	jbegin();
	jcommon(cpid, spid, cport, sport);
	jll("linger_s", g_linger);
	jstr("peer", g_peer_silent ? "silent" : "acks");
	jll("close_call_ns", tcall);
	jll("close_return_ns", tret);
	jll("close_blocked_ns", tret - tcall);
	jstate("client_state_after_close", st_after);
	jll("server_eof_ns", seof);
	if (g_peer_silent)
		jll("nft_deleted_ns", tdel);
	jll("server_close_ns", sclose);
	jbool("client_tw", tw);
	jend();
}

/* ---- close-wait-leak ---- */

static void scen_close_wait_leak(void)
{
	struct role_cfg sc = mkcfg(M_CW, 1), cc = mkcfg(M_CW, 1);
	struct chan *srv, *cli;
	long long cclose, seof, sclose;
	int sport, cport, cw, tw;
	pid_t spid, cpid;

	sc.delay_ms = g_leak_ms;
	srv = spawn("server", server_main, &sc);
	spid = srv->pid;
	sport = (int)kv_ll(srv, "ready", STEP_MS);
	cli = spawn("client", client_main, &cc);
	cpid = cli->pid;
	cport = (int)kv_ll(cli, "client_port", STEP_MS);
	kv_ll(srv, "accepted", STEP_MS);
	kv_ll(srv, "srv_data", STEP_MS);
	cmd_send(cli, "close");
	cclose = kv_ll(cli, "client_close_ns", STEP_MS);
	seof = kv_ll(srv, "server_eof_ns", STEP_MS);
	cw = diag_wait(sport, cport, ST_CLOSE_WAIT,
		       g_leak_ms / 2 < 1000 ? g_leak_ms / 2 : 1000, NULL);
	if (g_first_line) {
		printf("{\"server_pid\":%d,\"server_port\":%d,\"client_port\":%d}\n",
		       (int)spid, sport, cport);
		fflush(stdout);
	}
	sclose = kv_ll(srv, "server_close_ns", STEP_MS + g_leak_ms);
	tw = diag_wait(cport, sport, ST_TIME_WAIT, 2000, NULL);
	finish_children();

	jbegin();
	jcommon(cpid, spid, cport, sport);
	jll("leak_ms", g_leak_ms);
	jll("client_close_ns", cclose);
	jll("server_eof_ns", seof);
	jll("server_close_ns", sclose);
	jbool("close_wait_seen", cw);
	jbool("client_tw", tw);
	jend();
}

/* ---- inherit: a listener and a connection shared with an exec'd child ---- */

static void inh_server(const void *arg)
{
	struct sockaddr_storage ss;
	socklen_t l = mkaddr(&ss, g_port);
	char hold[16], rfd[16];
	char a0[] = "ctscen", a1[] = "inherit-child", a2[] = "--hold-ms",
	     a4[] = "--report-fd";
	char *argv[] = { a0, a1, a2, hold, a4, rfd, NULL };
	char self[PATH_MAX];
	long long t, t2;
	int lfd, fd, r;
	ssize_t k;
	pid_t pid;

	(void)arg;
	/* no CLOEXEC on either socket: the exec'd child inherits both */
	lfd = socket(g_fam, SOCK_STREAM, 0);
	if (lfd < 0)
		die("socket: %s", strerror(errno));
	set_reuseaddr(lfd);
	if (bind(lfd, (struct sockaddr *)&ss, l) < 0)
		die("bind listener port %d: %s", g_port, strerror(errno));
	if (listen(lfd, 16) < 0)
		die("listen: %s", strerror(errno));
	rep("ready", "%d", sock_port(lfd, 0));
	if (!wait_fd(lfd, POLLIN, STEP_MS))
		die("accept: timeout");
	fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		die("accept: %s", strerror(errno));
	rep("accepted", "%d", sock_port(fd, 1));
	read_exact(fd, sizeof(hello) - 1, 5000);
	rep("srv_data", "%d", (int)sizeof(hello) - 1);
	rep("fds", "%d %d", lfd, fd);
	cmd_wait("exit", STEP_MS);

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		/* the child reports on a copy of our pipe that survives exec */
		r = dup(g_rep_w);
		if (r < 0)
			die("dup: %s", strerror(errno));
		snprintf(hold, sizeof(hold), "%d", g_hold_ms);
		snprintf(rfd, sizeof(rfd), "%d", r);
		/* exec the real path so that comm is "ctscen", not "exe" */
		k = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (k > 0) {
			self[k] = 0;
			execv(self, argv);
		}
		execv("/proc/self/exe", argv);
		die("exec inherit-child: %s", strerror(errno));
	}
	rep("child_pid", "%d", (int)pid);
	t = now_ns();
	close(lfd);
	t2 = now_ns();
	close(fd);
	rep("parent_close_ns", "%lld", t);
	rep("parent_conn_close_ns", "%lld", t2);
	/* return: spawn() exits with status 0 */
}

static void inh_client(const void *arg)
{
	long long t, t2;
	int fd, r;

	(void)arg;
	fd = do_connect(0, &t, &t2);
	rep("client_port", "%d", sock_port(fd, 0));
	write_all(fd, hello, sizeof(hello) - 1);
	r = read_to_eof(fd, g_hold_ms + STEP_MS);
	t = now_ns();
	if (r)
		die("client expected EOF, got %s", strerror(r));
	rep("client_eof_ns", "%lld", t);
	t = now_ns();
	close(fd);
	rep("client_close_ns", "%lld", t);
	cmd_wait("exit", (int)(g_alarm + 5) * 1000);
}

static int count_socket_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	char target[64];
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		ssize_t k = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);

		if (k <= 0)
			continue;
		target[k] = 0;
		n += !strncmp(target, "socket:", 7);
	}
	closedir(d);
	return n;
}

static void child_report(const char *key, long long v)
{
	char line[64];
	int n;

	if (g_report_fd < 0)
		return;
	n = snprintf(line, sizeof(line), "%s %lld\n", key, v);
	if (write(g_report_fd, line, (size_t)n) != n)
		die("report: %s", strerror(errno));
}

/* exec'd by inherit: hold the inherited fds for --hold-ms, then exit(0) */
static void scen_inherit_child(void)
{
	if (g_report_fd >= 0 && fcntl(g_report_fd, F_GETFD) < 0)
		die("--report-fd %d: %s", g_report_fd, strerror(errno));
	child_report("child_socks", count_socket_fds());
	sleep_ms(g_hold_ms);
	child_report("child_exit_ns", now_ns());
	exit(0); /* the kernel closes the inherited sockets */
}

static void scen_inherit(void)
{
	struct chan *srv, *cli;
	long long pclose, pcclose, pexit, cexit, ceof, cclose;
	int lport, cport, rport, lheld, cst, socks, st, lgone, stw;
	pid_t ppid, cpid, chpid;

	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		die("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
	srv = spawn("server", inh_server, NULL);
	ppid = srv->pid;
	lport = (int)kv_ll(srv, "ready", STEP_MS);
	cli = spawn("client", inh_client, NULL);
	cpid = cli->pid;
	cport = (int)kv_ll(cli, "client_port", STEP_MS);
	rport = (int)kv_ll(srv, "accepted", STEP_MS);
	if (rport != cport)
		die("server accepted port %d, client has port %d", rport, cport);
	kv_ll(srv, "srv_data", STEP_MS);
	cmd_send(srv, "exit");
	chpid = (pid_t)kv_ll(srv, "child_pid", STEP_MS);
	g_extra[0] = chpid;
	pclose = kv_ll(srv, "parent_close_ns", STEP_MS);
	pcclose = kv_ll(srv, "parent_conn_close_ns", STEP_MS);
	pexit = reap_chan(srv, STEP_MS);
	/* the parent is gone; the child still holds both sockets */
	lheld = diag_state(lport, 0) == ST_LISTEN;
	cst = diag_state(lport, cport);
	socks = (int)kv_ll(srv, "child_socks", STEP_MS);
	cexit = kv_ll(srv, "child_exit_ns", g_hold_ms + STEP_MS);
	/* we are its subreaper since the parent exited */
	st = wait_pid(chpid, 5000, "inherit-child");
	g_extra[0] = 0;
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		die("inherit-child failed (status 0x%x)", st);
	lgone = diag_wait(lport, 0, 0, 1000, NULL);
	ceof = kv_ll(cli, "client_eof_ns", STEP_MS);
	cclose = kv_ll(cli, "client_close_ns", STEP_MS);
	stw = diag_wait(lport, cport, ST_TIME_WAIT, 2000, NULL);
	finish_children();

	jbegin();
	jcommon(cpid, ppid, cport, lport);
	jll("parent_pid", ppid);
	jll("child_pid", chpid);
	jll("hold_ms", g_hold_ms);
	jll("listen_port", lport);
	jll("conn_lport", lport);
	jll("conn_rport", rport);
	jll("parent_close_ns", pclose);
	jll("parent_conn_close_ns", pcclose);
	jll("parent_exit_ns", pexit);
	jbool("listener_after_parent_exit", lheld);
	jstate("conn_state_after_parent_exit", cst);
	jll("child_sockets", socks);
	jll("child_exit_ns", cexit);
	jbool("listener_gone_after_child_exit", lgone);
	jll("client_eof_ns", ceof);
	jll("client_close_ns", cclose);
	jbool("server_tw", stw);
	jend();
}

/* ---- restart: bind() after a server exit, port held by TIME_WAITs ---- */

#define RESTART_CONNS 3

static void rs_server1(const void *arg)
{
	struct sockaddr_storage ss;
	socklen_t l = mkaddr(&ss, g_port);
	long long t;
	int lfd, fd;

	(void)arg;
	lfd = socket(g_fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket: %s", strerror(errno));
	if (g_first_reuse)
		set_reuseaddr(lfd);
	if (bind(lfd, (struct sockaddr *)&ss, l) < 0)
		die("bind listener port %d: %s", g_port, strerror(errno));
	if (listen(lfd, 16) < 0)
		die("listen: %s", strerror(errno));
	rep("ready", "%d", sock_port(lfd, 0));
	for (int i = 0; i < RESTART_CONNS; i++) {
		fd = do_accept(lfd, STEP_MS);
		rep("accepted", "%d", sock_port(fd, 1));
		read_exact(fd, sizeof(hello) - 1, 5000);
		t = now_ns();
		close(fd); /* server first: the TIME_WAIT is on our side */
		rep("server_close_ns", "%lld", t);
	}
	cmd_wait("exit", STEP_MS);
	t = now_ns();
	close(lfd);
	rep("listen_close_ns", "%lld", t);
}

static void rs_client(const void *arg)
{
	long long t, t2;
	int fd, r;

	(void)arg;
	for (int i = 0; i < RESTART_CONNS; i++) {
		if (i)
			cmd_wait("next", STEP_MS);
		fd = do_connect(0, &t, &t2);
		rep("client_port", "%d", sock_port(fd, 0));
		write_all(fd, hello, sizeof(hello) - 1);
		r = read_to_eof(fd, STEP_MS);
		if (r)
			die("client expected EOF, got %s", strerror(r));
		t = now_ns();
		close(fd);
		rep("client_close_ns", "%lld", t);
	}
	cmd_wait("exit", (int)(g_alarm + 5) * 1000);
}

static void rs_server2(const void *arg)
{
	struct sockaddr_storage ss;
	socklen_t l = mkaddr(&ss, g_port);
	long long t;
	int fd, err = 0;

	(void)arg;
	fd = socket(g_fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	t = now_ns();
	if (bind(fd, (struct sockaddr *)&ss, l) < 0)
		err = errno;
	rep("bind1", "%d %lld", err, t);
	if (err) {
		/* the usual fix: same socket, SO_REUSEADDR, bind again */
		set_reuseaddr(fd);
		err = 0;
		t = now_ns();
		if (bind(fd, (struct sockaddr *)&ss, l) < 0 || listen(fd, 16) < 0)
			err = errno;
		rep("bind2", "%d %lld", err, t);
	} else if (listen(fd, 16) < 0) {
		die("listen: %s", strerror(errno));
	}
	cmd_wait("exit", (int)(g_alarm + 5) * 1000);
	close(fd);
}

static void scen_restart(void)
{
	struct chan *s1, *s2, *cli;
	long long sclose[RESTART_CONNS], lclose, t1 = 0, t2 = 0;
	int sport, cport[RESTART_CONNS], ntw = 0, err1 = 0, err2 = -1;
	pid_t s1pid, s2pid, cpid;
	char *v;

	s1 = spawn("server", rs_server1, NULL);
	s1pid = s1->pid;
	sport = (int)kv_ll(s1, "ready", STEP_MS);
	cli = spawn("client", rs_client, NULL);
	cpid = cli->pid;
	for (int i = 0; i < RESTART_CONNS; i++) {
		if (i)
			cmd_send(cli, "next");
		cport[i] = (int)kv_ll(cli, "client_port", STEP_MS);
		kv_ll(s1, "accepted", STEP_MS);
		sclose[i] = kv_ll(s1, "server_close_ns", STEP_MS);
		kv_ll(cli, "client_close_ns", STEP_MS);
		/* bounded; seconds only on a slow (emulated) machine */
		diag_wait(sport, cport[i], ST_TIME_WAIT, 10000, NULL);
	}
	cmd_send(s1, "exit");
	lclose = kv_ll(s1, "listen_close_ns", STEP_MS);
	reap_chan(s1, STEP_MS);
	for (int i = 0; i < RESTART_CONNS; i++)
		ntw += diag_state(sport, cport[i]) == ST_TIME_WAIT;

	s2 = spawn("server 2", rs_server2, NULL);
	s2pid = s2->pid;
	v = kv_get(s2, "bind1", STEP_MS);
	if (sscanf(v, "%d %lld", &err1, &t1) != 2)
		die("bad bind1 report '%s'", v);
	free(v);
	if (err1) {
		v = kv_get(s2, "bind2", STEP_MS);
		if (sscanf(v, "%d %lld", &err2, &t2) != 2)
			die("bad bind2 report '%s'", v);
		free(v);
	}
	finish_children();

	jbegin();
	jcommon(cpid, s1pid, cport[0], sport);
	jll("first_server_pid", s1pid);
	jll("second_server_pid", s2pid);
	jbool("first_reuseaddr", g_first_reuse);
	jkey("client_ports");
	jraw("[%d,%d,%d]", cport[0], cport[1], cport[2]);
	jkey("server_close_ns");
	jraw("[%lld,%lld,%lld]", sclose[0], sclose[1], sclose[2]);
	jll("listen_close_ns", lclose);
	jll("tw_count", ntw);
	jll("bind_errno", err1);
	if (err1) {
		jll("bind_fail_ns", t1);
		jbool("reuseaddr_ok", err2 == 0);
		jll("reuseaddr_errno", err2);
		jll("reuseaddr_bind_ns", t2);
	} else {
		jnull("bind_fail_ns");
		jnull("reuseaddr_ok");
		jnull("reuseaddr_errno");
		jnull("reuseaddr_bind_ns");
	}
	jend();
}

/* ---- held-port: a listener kept alive by a forked child ---- */

static void held_parent(const void *arg)
{
	long long t;
	int lfd;
	pid_t pid;

	(void)arg;
	lfd = mk_listener(g_port);
	rep("ready", "%d", sock_port(lfd, 0));
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		/* the holder: keeps lfd (inherited by fork) and nothing else */
		close(g_cmd_r);
		close(g_rep_w);
		g_cmd_r = g_rep_w = -1;
		sleep_ms(g_hold_ms);
		_exit(0);
	}
	rep("holder_pid", "%d", (int)pid);
	cmd_wait("exit", STEP_MS);
	t = now_ns();
	close(lfd);
	rep("parent_close_ns", "%lld", t);
}

static void binder_main(const void *arg)
{
	struct sockaddr_storage ss;
	socklen_t l = mkaddr(&ss, g_port);
	const char *call = "none";
	long long t;
	int fd, err = 0;

	(void)arg;
	fd = socket(g_fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	set_reuseaddr(fd);
	t = now_ns();
	if (bind(fd, (struct sockaddr *)&ss, l) < 0) {
		err = errno;
		call = "bind";
	} else if (listen(fd, 16) < 0) {
		err = errno;
		call = "listen";
	}
	rep("bind", "%d %lld %s", err, t, call);
	cmd_wait("exit", (int)(g_alarm + 5) * 1000);
	close(fd);
}

static void scen_held_port(void)
{
	struct chan *srv, *b;
	long long pclose, pexit, tb, tkill;
	int sport, held, err, gone;
	pid_t ppid, holder, bpid;
	char call[16], *v;

	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		die("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
	srv = spawn("server", held_parent, NULL);
	ppid = srv->pid;
	sport = (int)kv_ll(srv, "ready", STEP_MS);
	holder = (pid_t)kv_ll(srv, "holder_pid", STEP_MS);
	g_extra[0] = holder;
	cmd_send(srv, "exit");
	pclose = kv_ll(srv, "parent_close_ns", STEP_MS);
	pexit = reap_chan(srv, STEP_MS);
	held = diag_state(sport, 0) == ST_LISTEN;

	b = spawn("binder", binder_main, NULL);
	bpid = b->pid;
	v = kv_get(b, "bind", STEP_MS);
	if (sscanf(v, "%d %lld %15s", &err, &tb, call) != 3)
		die("bad bind report '%s'", v);
	free(v);

	/*
	 * The holder stays a while after the failed bind, as it would in
	 * life: a tracer explains the conflict from what holds the port then.
	 */
	sleep_ms(500);
	tkill = now_ns();
	kill(holder, SIGKILL);
	wait_pid(holder, 5000, "holder");
	g_extra[0] = 0;
	gone = diag_wait(sport, 0, 0, 1000, NULL);
	finish_children();

	jbegin();
	jll("client_pid", bpid);
	jll("server_pid", ppid);
	jnull("client_port");
	jll("server_port", sport);
	jll("holder_pid", holder);
	jll("binder_pid", bpid);
	jll("hold_ms", g_hold_ms);
	jll("parent_close_ns", pclose);
	jll("parent_exit_ns", pexit);
	jbool("listener_held", held);
	jll("bind_errno", err);
	jstr("failed_call", call);
	jll("bind_ns", tb);
	jll("holder_kill_ns", tkill);
	jbool("listener_gone", gone);
	jend();
}

/* ------------------------------------------------------------------ */

static void run_client_first(void) { scen_basic(M_CF, 0); }
static void run_server_first(void) { scen_basic(M_SF, 0); }
static void run_linger0(void) { scen_basic(M_LINGER0, 0); }
static void run_unread(void) { scen_basic(M_UNREAD, 0); }
static void run_close_wait(void) { scen_basic(M_CW, 0); }
/*
 * reconnect: one client socket, two connections, two TIME_WAITs.  The
 * client shuts down, the server closes, the client's socket goes to
 * TIME_WAIT with its fd still open; connect(AF_UNSPEC) then connect()
 * again on the same socket (same socket cookie), and the same close.
 */
static int reconnect_round(int fd, int lfd, int first)
{
	struct sockaddr_storage ss;
	socklen_t l = mkaddr(&ss, g_port);
	char buf[64];
	int afd, cport;

	if (!first && connect(fd, (struct sockaddr *)&ss, l) < 0)
		die("reconnect: %s", strerror(errno));
	cport = sock_port(fd, 0);
	afd = do_accept(lfd, 5000);
	if (shutdown(fd, SHUT_WR) < 0)
		die("shutdown: %s", strerror(errno));
	if (!wait_fd(afd, POLLIN, 5000) || read(afd, buf, sizeof(buf)) != 0)
		die("server: no EOF");
	close(afd);
	if (!diag_wait(cport, g_port, ST_TIME_WAIT, 2000, NULL))
		die("client port %d: no TIME_WAIT", cport);
	return cport;
}

static void scen_reconnect(void)
{
	struct sockaddr unspec = { .sa_family = AF_UNSPEC };
	long long t0, t1;
	int lfd = mk_listener(g_port), fd, p1, p2;

	fd = do_connect(0, &t0, &t1);
	p1 = reconnect_round(fd, lfd, 1);
	if (connect(fd, &unspec, sizeof(unspec)) < 0)
		die("connect(AF_UNSPEC): %s", strerror(errno));
	p2 = reconnect_round(fd, lfd, 0);
	close(fd);
	close(lfd);
	jbegin();
	jll("client_pid", getpid());
	jll("server_port", g_port);
	jll("first_port", p1);
	jll("second_port", p2);
	jend();
}

/* ---- listener-closed, listener-exit, abort-on-data, keepalive ---- */

/*
 * A TcpExt counter of this namespace (/proc/net/netstat: a line of names,
 * then a line of values), -1 if missing.
 */
static long long netstat_get(const char *name)
{
	char names[8192], vals[8192], *sn, *sv, *n, *v;
	long long res = -1;
	FILE *f = fopen("/proc/net/netstat", "r");

	if (!f)
		die("/proc/net/netstat: %s", strerror(errno));
	while (fgets(names, sizeof(names), f) && fgets(vals, sizeof(vals), f)) {
		if (strncmp(names, "TcpExt:", 7))
			continue;
		n = strtok_r(names + 7, " \n", &sn);
		v = strtok_r(vals + 7, " \n", &sv);
		for (; n && v; n = strtok_r(NULL, " \n", &sn), v = strtok_r(NULL, " \n", &sv))
			if (!strcmp(n, name))
				res = strtoll(v, NULL, 10);
	}
	fclose(f);
	return res;
}

/* listener-closed / listener-exit: the server never accepts */
static void lc_server(const void *arg)
{
	int by_exit = *(const int *)arg;
	long long t;
	int lfd;

	lfd = mk_listener(g_port);
	rep("ready", "%d", sock_port(lfd, 0));
	cmd_wait("close", STEP_MS);
	t = now_ns();
	if (by_exit) {
		rep("listener_close_ns", "%lld", t);
		_exit(0); /* do_exit() closes the listener */
	}
	close(lfd);
	rep("listener_close_ns", "%lld", t);
	cmd_wait("exit", (int)(g_alarm + 5) * 1000);
}

static void lc_client(const void *arg)
{
	long long t, t2;
	int fd, r;

	(void)arg;
	fd = do_connect(0, &t, &t2);
	rep("client_port", "%d", sock_port(fd, 0));
	write_all(fd, hello, sizeof(hello) - 1);
	r = read_to_eof(fd, STEP_MS);
	rep("client_read", "%s", r == 0 ? "eof" : r == ECONNRESET ? "reset" : strerror(r));
	cmd_wait("close", STEP_MS);
	close(fd);
	cmd_wait("exit", (int)(g_alarm + 5) * 1000);
}

static void scen_listener_closed_how(int by_exit)
{
	struct chan *srv, *cli;
	long long tclose;
	int sport, cport, est, gone, st;
	pid_t spid, cpid;
	char *cread;

	srv = spawn("server", lc_server, &by_exit);
	spid = srv->pid;
	sport = (int)kv_ll(srv, "ready", STEP_MS);
	cli = spawn("client", lc_client, NULL);
	cpid = cli->pid;
	cport = (int)kv_ll(cli, "client_port", STEP_MS);
	/* the child sits established in the accept queue, never accepted */
	est = diag_wait(sport, cport, ST_ESTABLISHED, 2000, NULL);
	if (by_exit)
		srv->exit_sent = 1; /* its end of the pipe closing is expected now */
	cmd_send(srv, "close");
	tclose = kv_ll(srv, "listener_close_ns", STEP_MS);
	if (by_exit) {
		st = wait_pid(spid, 5000, "server");
		srv->pid = -1;
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			die("server failed (status 0x%x)", st);
	}
	cread = kv_get(cli, "client_read", STEP_MS);
	gone = diag_wait(sport, cport, 0, 2000, NULL);
	cmd_send(cli, "close");
	finish_children();

	jbegin();
	jcommon(cpid, spid, cport, sport);
	jstr("listener_closed_by", by_exit ? "exit" : "close");
	jll("listener_close_ns", tclose);
	jbool("child_established", est);
	jstr("client_read", cread);
	jbool("child_gone", gone);
	jend();
	free(cread);
}

static void scen_listener_closed(void) { scen_listener_closed_how(0); }
static void scen_listener_exit(void) { scen_listener_closed_how(1); }

/*
 * abort-on-data: the client closes; the server reads EOF and answers at
 * once.  After the peer's FIN the server's ACK is delayed (pingpong mode),
 * so its answer acks the client's FIN and carries data: the orphaned client
 * socket aborts (FIN_WAIT1 -> FIN_WAIT2 -> CLOSE, TCPAbortOnData) and the
 * kernel sends an RST.  abort_on_data is that counter's increase in this
 * namespace (0: the ACK went out alone first and the answer met a
 * timewait socket instead).
 */
static void ad_server(const void *arg)
{
	static const char answer[] = "answer";
	long long t;
	int lfd, fd, r;

	(void)arg;
	lfd = mk_listener(g_port);
	rep("ready", "%d", sock_port(lfd, 0));
	fd = do_accept(lfd, STEP_MS);
	rep("accepted", "%d", sock_port(fd, 1));
	read_exact(fd, sizeof(hello) - 1, 5000);
	rep("srv_data", "%d", (int)sizeof(hello) - 1);
	r = read_to_eof(fd, STEP_MS);
	if (r)
		die("server expected EOF, got %s", strerror(r));
	write_all(fd, answer, sizeof(answer) - 1);
	t = now_ns();
	rep("server_sent_ns", "%lld", t);
	/* the client's RST moves this socket to CLOSE */
	for (int i = 0; i < 400 && tcp_state_of(fd) != ST_CLOSE; i++)
		sleep_ms(5);
	rep("server_state", "%d", tcp_state_of(fd));
	close(fd);
	cmd_wait("exit", (int)(g_alarm + 5) * 1000);
	close(lfd);
}

static void scen_abort_on_data(void)
{
	struct role_cfg cc = mkcfg(M_CF, 1);
	struct chan *srv, *cli;
	long long cclose, tsent, aod0, ovf0, aod, ovf;
	int sport, cport, tw, sstate;
	pid_t spid, cpid;

	aod0 = netstat_get("TCPAbortOnData");
	ovf0 = netstat_get("TCPTimeWaitOverflow");
	srv = spawn("server", ad_server, NULL);
	spid = srv->pid;
	sport = (int)kv_ll(srv, "ready", STEP_MS);
	cli = spawn("client", client_main, &cc);
	cpid = cli->pid;
	cport = (int)kv_ll(cli, "client_port", STEP_MS);
	kv_ll(srv, "accepted", STEP_MS);
	kv_ll(srv, "srv_data", STEP_MS);
	cmd_send(cli, "close");
	cclose = kv_ll(cli, "client_close_ns", STEP_MS);
	tsent = kv_ll(srv, "server_sent_ns", STEP_MS);
	sstate = (int)kv_ll(srv, "server_state", STEP_MS);
	tw = diag_wait(cport, sport, ST_TIME_WAIT, 200, NULL);
	aod = netstat_get("TCPAbortOnData") - aod0;
	ovf = netstat_get("TCPTimeWaitOverflow") - ovf0;
	finish_children();

	jbegin();
	jcommon(cpid, spid, cport, sport);
	jll("client_close_ns", cclose);
	jll("server_sent_ns", tsent);
	jstate("server_state", sstate);
	jll("abort_on_data", aod);
	jll("tw_overflow", ovf);
	jbool("client_tw", tw);
	jend();
}

/*
 * keepalive: the client sets SO_KEEPALIVE with TCP_KEEPIDLE 1 s,
 * TCP_KEEPINTVL 1 s, TCP_KEEPCNT 2; an nft rule then drops everything from
 * the server to the client, so no probe is answered and the client's read
 * fails with ETIMEDOUT (tcp_keepalive_timer() resets the connection).
 */
static void ka_server(const void *arg)
{
	int lfd, fd, r;

	(void)arg;
	lfd = mk_listener(g_port);
	rep("ready", "%d", sock_port(lfd, 0));
	fd = do_accept(lfd, STEP_MS);
	rep("accepted", "%d", sock_port(fd, 1));
	read_exact(fd, sizeof(hello) - 1, 5000);
	rep("srv_data", "%d", (int)sizeof(hello) - 1);
	r = read_to_eof(fd, STEP_MS);
	rep("server_read", "%s", r == 0 ? "eof" : r == ECONNRESET ? "reset" : strerror(r));
	close(fd);
	cmd_wait("exit", (int)(g_alarm + 5) * 1000);
	close(lfd);
}

static void ka_client(const void *arg)
{
	int one = 1, idle = 1, intvl = 1, cnt = 2, fd, r;
	long long t, t2;

	(void)arg;
	fd = do_connect(0, &t, &t2);
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)))
		die("keepalive options: %s", strerror(errno));
	rep("client_port", "%d", sock_port(fd, 0));
	write_all(fd, hello, sizeof(hello) - 1);
	cmd_wait("wait", STEP_MS);
	r = read_to_eof(fd, STEP_MS);
	t = now_ns();
	rep("client_errno", "%d", r);
	rep("client_error_ns", "%lld", t);
	close(fd);
	cmd_wait("exit", (int)(g_alarm + 5) * 1000);
}

static void scen_keepalive(void)
{
	struct chan *srv, *cli;
	long long terr;
	int sport, cport, cerr;
	pid_t spid, cpid;
	char *sread;

	srv = spawn("server", ka_server, NULL);
	spid = srv->pid;
	sport = (int)kv_ll(srv, "ready", STEP_MS);
	cli = spawn("client", ka_client, NULL);
	cpid = cli->pid;
	cport = (int)kv_ll(cli, "client_port", STEP_MS);
	kv_ll(srv, "accepted", STEP_MS);
	kv_ll(srv, "srv_data", STEP_MS);
	snprintf(g_nft_table, sizeof(g_nft_table), "ctscen_keepalive");
	sleep_ms(50); /* let the ACK of the data go out first */
	nft_setup_drop(sport, cport);
	cmd_send(cli, "wait");
	cerr = (int)kv_ll(cli, "client_errno", STEP_MS);
	terr = kv_ll(cli, "client_error_ns", STEP_MS);
	sread = kv_get(srv, "server_read", STEP_MS);
	if (nft_delete_table(0))
		die("nft delete table failed");
	g_nft_active = 0;
	finish_children();

	jbegin();
	jcommon(cpid, spid, cport, sport);
	jll("client_errno", cerr);
	jll("client_error_ns", terr);
	jstr("server_read", sread);
	jend();
	free(sread);
}

static void run_hold(void) { scen_basic(M_CW, 1); }

/* ---- prefork: workers accept from their parent's listener ---- */

#define PREFORK_START_MS 300000 /* the test may hold us (SIGSTOP) while a tracer starts */

static int g_prefork_lfd = -1;

/*
 * One worker: named ct-workerN, accepts one connection when told, reads
 * until the peer's RST (closes at once) or FIN (then leaks the socket in
 * CLOSE_WAIT for --leak-ms before closing it).
 */
static void prefork_worker(const void *arg)
{
	char name[16], line[128];
	long long t;
	int fd, r;

	snprintf(name, sizeof(name), "ct-worker%d", *(const int *)arg);
	prctl(PR_SET_NAME, name);
	cmd_get(line, sizeof(line), PREFORK_START_MS);
	if (!strcmp(line, "exit"))
		return;
	if (strcmp(line, "accept"))
		die("expected command 'accept', got '%s'", line);
	fd = do_accept(g_prefork_lfd, STEP_MS);
	rep("accepted", "%d", sock_port(fd, 1));
	read_exact(fd, sizeof(hello) - 1, 5000);
	rep("srv_data", "%d", (int)sizeof(hello) - 1);
	r = read_to_eof(fd, STEP_MS);
	t = now_ns();
	rep("read_end", "%s", r == 0 ? "eof" : r == ECONNRESET ? "reset" : strerror(r));
	rep("read_end_ns", "%lld", t);
	if (r == 0)
		sleep_ms(g_leak_ms);
	t = now_ns();
	close(fd);
	rep("close_ns", "%lld", t);
	cmd_wait("exit", STEP_MS + g_leak_ms);
}

/* the peer of both connections: connect, then an RST (SO_LINGER {1,0}) or a FIN */
static void prefork_client(const void *arg)
{
	struct linger lg = { 1, 0 };
	char line[128];
	long long t, t2;
	int fd = -1, timeout = PREFORK_START_MS;

	(void)arg;
	for (;;) {
		cmd_get(line, sizeof(line), timeout);
		timeout = STEP_MS + g_leak_ms;
		if (!strcmp(line, "exit"))
			return;
		if (!strcmp(line, "connect")) {
			fd = do_connect(0, &t, &t2);
			rep("client_port", "%d", sock_port(fd, 0));
			write_all(fd, hello, sizeof(hello) - 1);
		} else if (!strcmp(line, "reset") || !strcmp(line, "close")) {
			if (line[0] == 'r' && setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)))
				die("SO_LINGER: %s", strerror(errno));
			t = now_ns();
			close(fd);
			rep("client_close_ns", "%lld", t);
		} else {
			die("unknown command '%s'", line);
		}
	}
}

static void scen_prefork(void)
{
	static const int one = 1, two = 2;
	struct chan *w1, *w2, *cli;
	long long deadline, rst_ns, w1_end_ns, w2_eof_ns, w2_close_ns;
	int sport, rst_port, leak_port, a1, a2, cw;
	char *w1_read, *w2_read;
	pid_t w1pid, w2pid, cpid;
	struct stat st;

	/* the parent listens; the workers it forks accept (nginx, gunicorn, Apache prefork) */
	g_prefork_lfd = mk_listener(g_port);
	sport = sock_port(g_prefork_lfd, 0);
	w1 = spawn("worker1", prefork_worker, &one);
	w2 = spawn("worker2", prefork_worker, &two);
	cli = spawn("client", prefork_client, NULL);
	w1pid = w1->pid;
	w2pid = w2->pid;
	cpid = cli->pid;
	printf("{\"parent_pid\":%d,\"worker_pids\":[%d,%d],\"client_pid\":%d,\"server_port\":%d}\n",
	       (int)getpid(), (int)w1pid, (int)w2pid, (int)cpid, sport);
	fflush(stdout);
	deadline = now_ns() + PREFORK_START_MS * 1000000LL;
	while (g_wait_file && stat(g_wait_file, &st) < 0) {
		if (now_ns() > deadline)
			die("wait-file %s did not appear", g_wait_file);
		sleep_ms(10);
	}

	/* worker 1's connection: reset by the peer */
	cmd_send(w1, "accept");
	cmd_send(cli, "connect");
	rst_port = (int)kv_ll(cli, "client_port", STEP_MS);
	a1 = (int)kv_ll(w1, "accepted", STEP_MS);
	kv_ll(w1, "srv_data", STEP_MS);
	cmd_send(cli, "reset");
	rst_ns = kv_ll(cli, "client_close_ns", STEP_MS);
	w1_read = kv_get(w1, "read_end", STEP_MS);
	w1_end_ns = kv_ll(w1, "read_end_ns", STEP_MS);
	kv_ll(w1, "close_ns", STEP_MS);

	/* worker 2's: the peer closes, the worker leaks it in CLOSE_WAIT */
	cmd_send(w2, "accept");
	cmd_send(cli, "connect");
	leak_port = (int)kv_ll(cli, "client_port", STEP_MS);
	a2 = (int)kv_ll(w2, "accepted", STEP_MS);
	kv_ll(w2, "srv_data", STEP_MS);
	cmd_send(cli, "close");
	kv_ll(cli, "client_close_ns", STEP_MS);
	w2_read = kv_get(w2, "read_end", STEP_MS);
	w2_eof_ns = kv_ll(w2, "read_end_ns", STEP_MS);
	cw = diag_wait(sport, leak_port, ST_CLOSE_WAIT, 1000, NULL);
	w2_close_ns = kv_ll(w2, "close_ns", STEP_MS + g_leak_ms);
	if (a1 != rst_port || a2 != leak_port)
		die("workers accepted ports %d/%d, client made %d/%d", a1, a2, rst_port, leak_port);
	finish_children();
	close(g_prefork_lfd);

	jbegin();
	jll("parent_pid", getpid());
	jll("client_pid", cpid);
	jll("server_port", sport);
	jll("reset_worker_pid", w1pid);
	jstr("reset_worker_comm", "ct-worker1");
	jll("reset_port", rst_port);
	jll("reset_ns", rst_ns);
	jstr("reset_worker_read", w1_read);
	jll("reset_seen_ns", w1_end_ns);
	jll("leak_worker_pid", w2pid);
	jstr("leak_worker_comm", "ct-worker2");
	jll("leak_port", leak_port);
	jstr("leak_worker_read", w2_read);
	jll("leak_eof_ns", w2_eof_ns);
	jll("leak_close_ns", w2_close_ns);
	jll("leak_ms", g_leak_ms);
	jbool("close_wait_seen", cw);
	jend();
	free(w1_read);
	free(w2_read);
}

static const struct scenario {
	const char *name;
	void (*run)(void);
} scenarios[] = {
	{ "client-first", run_client_first },
	{ "server-first", run_server_first },
	{ "simultaneous", scen_simultaneous },
	{ "linger0", run_linger0 },
	{ "unread", run_unread },
	{ "close-wait", run_close_wait },
	{ "tw-reuse", scen_tw_reuse },
	{ "tw-rst", scen_tw_rst },
	{ "tw-expire", run_client_first },
	{ "two-closes", scen_two_closes },
	{ "hold", run_hold },
	{ "reuse-churn", scen_reuse_churn },
	{ "shutdown", scen_shutdown },
	{ "killed", scen_killed },
	{ "exit", scen_exit },
	{ "linger-wait", scen_linger_wait },
	{ "inherit", scen_inherit },
	{ "inherit-child", scen_inherit_child },
	{ "restart", scen_restart },
	{ "held-port", scen_held_port },
	{ "close-wait-leak", scen_close_wait_leak },
	{ "reconnect", scen_reconnect },
	{ "listener-closed", scen_listener_closed },
	{ "listener-exit", scen_listener_exit },
	{ "abort-on-data", scen_abort_on_data },
	{ "keepalive", scen_keepalive },
	{ "prefork", scen_prefork },
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ctscen SCENARIO [-6] [--port N] [--cport N] [--delay MS]\n"
		"              [--gap MS] [--wait-file PATH] [--set-sysctl] [--debug]\n"
		"              [--addr A] [--count N] [--max-seconds S]  (reuse-churn)\n"
		"              [--signal N]  (killed)\n"
		"              [--linger S] [--peer-acks|--peer-silent]  (linger-wait)\n"
		"              [--hold-ms M]  (inherit, held-port)\n"
		"              [--leak-ms M] [--first-line]  (close-wait-leak)\n"
		"              [--leak-ms M]  (prefork)\n"
		"              [--first-reuseaddr]  (restart)\n"
		"scenarios: client-first server-first simultaneous linger0 unread\n"
		"           close-wait tw-reuse tw-rst tw-expire two-closes hold\n"
		"           reuse-churn shutdown killed exit linger-wait inherit\n"
		"           restart held-port close-wait-leak reconnect prefork\n"
		"           listener-closed listener-exit abort-on-data keepalive\n"
		"internal:  inherit-child --hold-ms M [--report-fd N]\n");
}

static int parse_int(const char *s, int lo, int hi, const char *what)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || !*s || *end || v < lo || v > hi) {
		fprintf(stderr, "ctscen: bad %s '%s' (%d..%d)\n", what, s, lo, hi);
		exit(2);
	}
	return (int)v;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "cport", required_argument, NULL, 'c' },
		{ "delay", required_argument, NULL, 'd' },
		{ "gap", required_argument, NULL, 'g' },
		{ "wait-file", required_argument, NULL, 'w' },
		{ "set-sysctl", no_argument, NULL, 'S' },
		{ "debug", no_argument, NULL, 'D' },
		{ "addr", required_argument, NULL, 'a' },
		{ "count", required_argument, NULL, 'n' },
		{ "max-seconds", required_argument, NULL, 'M' },
		{ "signal", required_argument, NULL, 'k' },
		{ "linger", required_argument, NULL, 'L' },
		{ "peer-acks", no_argument, NULL, 'A' },
		{ "peer-silent", no_argument, NULL, 'Z' },
		{ "hold-ms", required_argument, NULL, 'H' },
		{ "leak-ms", required_argument, NULL, 'K' },
		{ "first-line", no_argument, NULL, 'F' },
		{ "first-reuseaddr", no_argument, NULL, 'R' },
		{ "report-fd", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const nft_paths[] = {
		"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft", "/bin/nft",
	};
	/* options that only some scenarios take, and which */
	static const struct {
		int opt;
		const char *name, *scens;
	} only[] = {
		{ 'k', "--signal", " killed " },
		{ 'L', "--linger", " linger-wait " },
		{ 'A', "--peer-acks", " linger-wait " },
		{ 'Z', "--peer-silent", " linger-wait " },
		{ 'H', "--hold-ms", " inherit inherit-child held-port " },
		{ 'K', "--leak-ms", " close-wait-leak prefork " },
		{ 'F', "--first-line", " close-wait-leak " },
		{ 'R', "--first-reuseaddr", " restart " },
		{ 'r', "--report-fd", " inherit-child " },
	};
	char seen[128] = { 0 }, padded[64];
	const struct scenario *scen = NULL;
	struct sigaction sa;
	int o;

	if (argc < 2) {
		fprintf(stderr, "ctscen: missing SCENARIO (try --help)\n");
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	g_scen = argv[1];
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		if (!strcmp(scenarios[i].name, g_scen))
			scen = &scenarios[i];
	if (!scen) {
		fprintf(stderr, "ctscen: unknown scenario '%s' (try --help)\n", g_scen);
		return 2;
	}
	optind = 2;
	opterr = 0;
	while ((o = getopt_long(argc, argv, "46h", opts, NULL)) != -1) {
		switch (o) {
		case '4': g_fam = AF_INET; break;
		case '6': g_fam = AF_INET6; break;
		case 'p': g_port = parse_int(optarg, 1, 32767, "port"); break;
		case 'c': g_cport = parse_int(optarg, 1, 32767, "cport"); break;
		case 'd': g_delay = parse_int(optarg, 0, 600000, "delay"); break;
		case 'g': g_gap = parse_int(optarg, 0, 600000, "gap"); g_gap_set = 1; break;
		case 'a': g_addr_str = optarg; break;
		case 'n': g_count = parse_int(optarg, 1, CHURN_MAX_COUNT, "count"); break;
		case 'M': g_max_seconds = parse_int(optarg, 1, 300, "max-seconds"); break;
		case 'k': g_signal = parse_int(optarg, 1, 64, "signal"); break;
		case 'L': g_linger = parse_int(optarg, 1, 300, "linger"); break;
		case 'A': g_peer_silent = 0; break;
		case 'Z': g_peer_silent = 1; break;
		case 'H': g_hold_ms = parse_int(optarg, 0, 600000, "hold-ms"); break;
		case 'K': g_leak_ms = parse_int(optarg, 0, 600000, "leak-ms"); break;
		case 'F': g_first_line = 1; break;
		case 'R': g_first_reuse = 1; break;
		case 'r': g_report_fd = parse_int(optarg, 3, 1 << 20, "report-fd"); break;
		case 'w': g_wait_file = optarg; break;
		case 'S': g_set_sysctl = 1; break;
		case 'D': g_debug = 1; break;
		case 'h': usage(stdout); return 0;
		default:
			fprintf(stderr, "ctscen: bad option '%s' (try --help)\n",
				argv[optind - 1]);
			return 2;
		}
		if (o > 0 && o < (int)sizeof(seen))
			seen[o] = 1;
	}
	snprintf(padded, sizeof(padded), " %s ", g_scen);
	for (size_t i = 0; i < sizeof(only) / sizeof(only[0]); i++)
		if (seen[only[i].opt] && !strstr(only[i].scens, padded)) {
			fprintf(stderr, "ctscen: %s is for%.*s only\n", only[i].name,
				(int)strlen(only[i].scens) - 1, only[i].scens);
			return 2;
		}
	if (seen['A'] && seen['Z']) {
		fprintf(stderr, "ctscen: --peer-acks and --peer-silent exclude each other\n");
		return 2;
	}
	if (g_signal == SIGCHLD || g_signal == SIGCONT || g_signal == SIGSTOP ||
	    g_signal == SIGTSTP || g_signal == SIGTTIN || g_signal == SIGTTOU ||
	    g_signal == SIGURG || g_signal == SIGWINCH ||
	    (g_signal > 31 && g_signal < SIGRTMIN) || g_signal > SIGRTMAX) {
		fprintf(stderr, "ctscen: --signal %d does not terminate a process by default\n",
			g_signal);
		return 2;
	}
	if (g_hold_ms < 0)
		g_hold_ms = !strcmp(g_scen, "held-port") ? 3000 : 1500;
	if (optind != argc) {
		fprintf(stderr, "ctscen: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (g_cport == g_port) {
		fprintf(stderr, "ctscen: --cport must differ from --port\n");
		return 2;
	}
	if (strcmp(g_scen, "reuse-churn")) {
		if (g_addr_str || g_count != 20 || g_max_seconds != 20) {
			fprintf(stderr, "ctscen: --addr, --count and --max-seconds are for reuse-churn only\n");
			return 2;
		}
	} else {
		if (!g_gap_set)
			g_gap = 100;
		if (!g_addr_str)
			g_addr_str = g_fam == AF_INET6 ? "::1" : "127.0.0.1";
		if (g_fam == AF_INET ? inet_pton(AF_INET, g_addr_str, &g_addr4) != 1
				     : inet_pton(AF_INET6, g_addr_str, &g_addr6) != 1) {
			fprintf(stderr, "ctscen: bad --addr '%s' (an %s address)\n",
				g_addr_str, g_fam == AF_INET6 ? "IPv6" : "IPv4");
			return 2;
		}
	}

	for (size_t i = 0; i < sizeof(nft_paths) / sizeof(nft_paths[0]); i++)
		if (!access(nft_paths[i], X_OK)) {
			snprintf(g_nft_path, sizeof(g_nft_path), "%s", nft_paths[i]);
			break;
		}

	if (!strcmp(g_scen, "close-wait"))
		g_alarm += (unsigned)g_delay / 1000 + 1;
	else if (!strcmp(g_scen, "hold"))
		g_alarm += 20 + (unsigned)g_delay / 1000 + 1;
	else if (!strcmp(g_scen, "tw-reuse"))
		g_alarm += (unsigned)g_gap / 1000 + 1;
	else if (!strcmp(g_scen, "reuse-churn"))
		g_alarm = (unsigned)g_max_seconds + 15;
	else if (!strcmp(g_scen, "linger-wait"))
		g_alarm += (unsigned)g_linger + (unsigned)g_linger / 8 + 1;
	else if (!strcmp(g_scen, "inherit") || !strcmp(g_scen, "held-port"))
		g_alarm += (unsigned)g_hold_ms / 1000 + 1;
	else if (!strcmp(g_scen, "inherit-child"))
		g_alarm = (unsigned)g_hold_ms / 1000 + 10;
	else if (!strcmp(g_scen, "close-wait-leak"))
		g_alarm += (unsigned)g_leak_ms / 1000 + 1;
	else if (!strcmp(g_scen, "prefork"))
		g_alarm += PREFORK_START_MS / 1000 + (unsigned)g_leak_ms / 1000 + 1;
	g_alarm_msg_len = (size_t)snprintf(g_alarm_msg, sizeof(g_alarm_msg),
		"ctscen: %.40s: timed out after %u s (alarm)\n", g_scen, g_alarm);
	if (g_alarm_msg_len >= sizeof(g_alarm_msg))
		g_alarm_msg_len = sizeof(g_alarm_msg) - 1;

	signal(SIGPIPE, SIG_IGN);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fatal_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	if (strcmp(g_scen, "hold") && strcmp(g_scen, "prefork"))
		wait_for_file();
	alarm(g_alarm);
	scen->run();
	alarm(0);
	nft_cleanup();
	return 0;
}
