// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sockdiag / holders / why_busy against real sockets on loopback.
 * Run as root inside a network namespace of its own:
 *   ip netns add ctsd && ip netns exec ctsd ./test_sockdiag; ip netns del ctsd
 * It refuses to run in the initial network namespace.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "holders.h"
#include "sockdiag.h"
#include "why_busy.h"

#define PORT_MAIN    7555
#define PORT_BOUND   7556
#define PORT_NOREUSE 7557
#define PORT_V6	     7558
#define PORT_CONN    7559
#define PORT_SHARED  7560
#define PORT_FREE    7599

/* our comm, with bytes JSON must escape and a terminal must not see */
#define ODD_COMM      "ut\"q\\x\x01"
#define ODD_COMM_JSON "ut\\\"q\\\\x\\u0001"
#define ODD_COMM_TEXT "ut\"q\\x?"

static int passed, failed;

static bool check(const char *name, bool ok, const char *fmt, ...)
{
	va_list ap;

	if (ok) {
		printf("PASS %s\n", name);
		passed++;
		return true;
	}
	printf("FAIL %s: ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	failed++;
	return false;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t inode_of(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? 0 : st.st_ino;
}

static uint16_t local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len))
		return 0;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static bool same_file(const char *a, const char *b)
{
	struct stat x, y;

	return !stat(a, &x) && !stat(b, &y) && x.st_ino == y.st_ino && x.st_dev == y.st_dev;
}

/*
 * Inside a namespace made by "ip netns add" (bind-mounted under
 * /run/netns), or at least not in the one pid 1 is in, when we may look.
 */
static bool in_own_netns(void)
{
	char path[300];
	struct dirent *de;
	bool named = false;
	DIR *d = opendir("/run/netns");

	while (d && !named && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/run/netns/%s", de->d_name);
		named = same_file(path, "/proc/self/ns/net");
	}
	if (d)
		closedir(d);
	if (named)
		return true;
	return !access("/proc/1/ns/net", R_OK) && !same_file("/proc/1/ns/net", "/proc/self/ns/net");
}

static int lo_up(void)
{
	struct ifreq ifr = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM, 0), err = 0;

	if (fd < 0)
		return -errno;
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		err = -errno;
	ifr.ifr_flags |= IFF_UP;
	if (!err && ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		err = -errno;
	close(fd);
	return err;
}

static void addr_of(int family, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		a->sin6_addr = in6addr_loopback;
		*len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		*len = sizeof(*a);
	}
}

/* a socket bound to loopback:port; listening when backlog > 0.  -errno on failure */
static int bound_socket(int family, uint16_t port, bool reuseaddr, int backlog)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, err;
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (reuseaddr)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	addr_of(family, port, &ss, &len);
	if (bind(fd, (struct sockaddr *)&ss, len) || (backlog > 0 && listen(fd, backlog))) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int connect_to(int family, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	addr_of(family, port, &ss, &len);
	if (connect(fd, (struct sockaddr *)&ss, len)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* server side closes first: the server's socket ends in TIME_WAIT on the server port */
static void close_server_first(int server, int client)
{
	char c;

	close(server);
	/* the client sees EOF once our FIN is in; its close() then sends its FIN */
	while (read(client, &c, 1) > 0)
		;
	close(client);
}

struct want {
	int listen, established, timewait, other;
};

/* sock_diag until the counts are as wanted (state changes on loopback are quick, not instant) */
static int wait_report(uint16_t port, struct want w, struct port_report *r)
{
	uint64_t end = now_ms() + 3000;
	int err;

	for (;;) {
		err = sockdiag_port(port, r);
		if (err)
			return err;
		if ((r->n_listen == w.listen && r->n_established == w.established &&
		     r->n_timewait == w.timewait && r->n_other == w.other) ||
		    now_ms() > end)
			return 0;
		port_report_free(r);
		usleep(10000);
	}
}

static char *capture(uint16_t port, bool json, int *err)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	*err = why_busy_print(port, json, f);
	fclose(f);
	return buf;
}

static const struct port_socket *find_state(const struct port_report *r, int state)
{
	for (int i = 0; i < r->n; i++)
		if (r->socks[i].state == state)
			return &r->socks[i];
	return NULL;
}

static bool has_holder(const struct holder_scan *s, uint64_t inode, uint32_t pid, int fd)
{
	int n;
	const struct holder *h = holders_of(s, inode, &n);

	for (int i = 0; h && i < n; i++)
		if (h[i].pid == pid && h[i].fd == fd)
			return true;
	return false;
}

static void check_contains(const char *name, const char *text, const char *needle)
{
	check(name, text && strstr(text, needle), "missing \"%s\" in:\n%s", needle,
	      text ? text : "(null)");
}

/* ---- the main port: LISTEN + ESTABLISHED + CLOSE_WAIT + TIME_WAIT ---- */

struct main_port {
	int l, c[4], a[4];
	uint64_t l_ino;
};

static int setup_main(struct main_port *m)
{
	m->l = bound_socket(AF_INET, PORT_MAIN, true, 16);
	if (m->l < 0)
		return m->l;
	m->l_ino = inode_of(m->l);
	for (int i = 0; i < 4; i++) {
		m->c[i] = connect_to(AF_INET, PORT_MAIN);
		m->a[i] = accept4(m->l, NULL, NULL, SOCK_CLOEXEC);
		if (m->c[i] < 0 || m->a[i] < 0)
			return -EIO;
	}
	/* 0, 1: server closes first -> TIME_WAIT on PORT_MAIN */
	close_server_first(m->a[0], m->c[0]);
	close_server_first(m->a[1], m->c[1]);
	/* 2: client closes first -> CLOSE_WAIT on PORT_MAIN, TIME_WAIT-ish on the client's port */
	close(m->c[2]);
	/* 3: stays established */
	return 0;
}

static void test_main_report(struct main_port *m)
{
	struct port_report r;
	const struct port_socket *s;
	int err = wait_report(PORT_MAIN, (struct want){ 1, 1, 2, 1 }, &r);
	bool lport_ok = true;

	if (!check("sockdiag_port main", err == 0, "%s", strerror(-err)))
		return;
	check("counts main",
	      r.n_listen == 1 && r.n_established == 1 && r.n_timewait == 2 && r.n_other == 1 &&
		      r.n_bound == 0 && r.n == 5 && r.n_dropped == 0,
	      "listen %d est %d tw %d other %d bound %d n %d", r.n_listen, r.n_established,
	      r.n_timewait, r.n_other, r.n_bound, r.n);
	for (int i = 0; i < r.n; i++)
		lport_ok &= r.socks[i].lport == PORT_MAIN && r.socks[i].family == AF_INET;
	check("only local port main", lport_ok, "a socket with another local port or family");
	s = find_state(&r, TCP_LISTEN);
	check("listener inode", s && s->inode == m->l_ino, "got %" PRIu64 " want %" PRIu64,
	      s ? s->inode : 0, m->l_ino);
	s = find_state(&r, TCP_ESTABLISHED);
	check("established inode",
	      s && s->inode == inode_of(m->a[3]) && s->rport == local_port(m->c[3]),
	      "inode %" PRIu64 " rport %u", s ? s->inode : 0, s ? s->rport : 0);
	s = find_state(&r, TCP_CLOSE_WAIT);
	check("client-first close leaves CLOSE_WAIT on the server port",
	      s && s->inode == inode_of(m->a[2]), "no CLOSE_WAIT with the accepted socket's inode");
	s = find_state(&r, TCP_TIME_WAIT);
	check("timewait fields",
	      s && s->inode == 0 && s->timer == SOCKDIAG_TIMER_TIMEWAIT && s->expires_ms > 50000 &&
		      s->expires_ms <= SOCKDIAG_TIMEWAIT_LEN_MS,
	      "inode %" PRIu64 " timer %u expires %u", s ? s->inode : 0, s ? s->timer : 0,
	      s ? s->expires_ms : 0);
	check("timewait min/max/age",
	      r.tw_min_expires_ms <= r.tw_max_expires_ms && r.tw_max_expires_ms <= 60000 &&
		      port_report_tw_oldest_age_ms(&r) >= 0 &&
		      port_report_tw_oldest_age_ms(&r) < 10000,
	      "min %u max %u age %" PRId64, r.tw_min_expires_ms, r.tw_max_expires_ms,
	      port_report_tw_oldest_age_ms(&r));
	port_report_free(&r);
}

/*
 * The client that closed first: its orphaned FIN_WAIT2 becomes a timewait
 * socket with tw_substate FIN_WAIT2 (tcp_rcv_state_process() calls
 * tcp_time_wait(sk, TCP_FIN_WAIT2, tmo) when tcp_fin_timeout <= 60 s).
 */
static void test_client_side(struct main_port *m)
{
	struct port_report r;
	uint16_t port = 0;
	int err;

	/* c[2] is closed; its port is the CLOSE_WAIT socket's peer port */
	err = sockdiag_port(PORT_MAIN, &r);
	if (!err) {
		const struct port_socket *s = find_state(&r, TCP_CLOSE_WAIT);

		port = s ? s->rport : 0;
		port_report_free(&r);
	}
	if (!check("client port known", port != 0, "no CLOSE_WAIT peer"))
		return;
	err = wait_report(port, (struct want){ 0, 0, 1, 0 }, &r);
	if (!check("sockdiag_port client", err == 0, "%s", strerror(-err)))
		return;
	check("client FIN_WAIT2 kept as a timewait socket",
	      r.n_timewait == 1 && r.n_tw_fin_wait2 == 1 && r.n == 1 &&
		      r.socks[0].state == TCP_FIN_WAIT2 &&
		      r.socks[0].timer == SOCKDIAG_TIMER_TIMEWAIT &&
		      port_report_tw_oldest_age_ms(&r) == -1,
	      "tw %d fw2 %d n %d state %d", r.n_timewait, r.n_tw_fin_wait2, r.n,
	      r.n ? r.socks[0].state : -1);
	port_report_free(&r);
}

static void test_holders(struct main_port *m)
{
	uint64_t ino[3] = { m->l_ino, inode_of(m->a[3]), m->l_ino };
	uint64_t none = 1;
	struct holder_scan s;
	int err, n;

	err = holders_find(ino, 3, 100, 0, &s);
	if (check("holders_find", err == 0, "%s", strerror(-err))) {
		check("holders: own listener fd", has_holder(&s, m->l_ino, getpid(), m->l),
		      "pid %d fd %d not found", getpid(), m->l);
		check("holders: own established fd", has_holder(&s, ino[1], getpid(), m->a[3]),
		      "fd %d not found", m->a[3]);
		check("holders: complete", !s.gave_up && s.n == 2 && s.fds_read > 0,
		      "gave_up %d (%s) n %d", s.gave_up, s.why ? s.why : "", s.n);
		check("holders: comm", s.n && !strcmp(s.h[0].comm, ODD_COMM), "comm \"%s\"",
		      s.n ? s.h[0].comm : "");
		holders_of(&s, 424242, &n);
		check("holders_of absent", n == 0, "n %d", n);
		holder_scan_free(&s);
	}
	err = holders_find_limited(ino, 2, 100, 0, 1, &s);
	check("holders: fd limit gives up",
	      err == 0 && s.gave_up && !strcmp(s.why, "fd limit") && s.fds_read <= 1,
	      "err %d gave_up %d fds %" PRIu64, err, s.gave_up, s.fds_read);
	holder_scan_free(&s);
	err = holders_find(ino, 2, 1, 0, &s);
	check("holders: result limit",
	      err == 0 && s.n == 1 && s.gave_up && !strcmp(s.why, "result limit"),
	      "err %d n %d gave_up %d", err, s.n, s.gave_up);
	holder_scan_free(&s);
	err = holders_find(&none, 1, 10, 0, &s);
	check("holders: unknown inode", err == 0 && s.n == 0 && !s.gave_up, "err %d n %d", err,
	      s.n);
	holder_scan_free(&s);
	err = holders_find(NULL, 0, 10, 0, &s);
	check("holders: no inodes", err == 0 && s.n == 0, "err %d", err);
	holder_scan_free(&s);
}

static void test_why_busy_main(struct main_port *m)
{
	char want[256];
	int err;
	char *t = capture(PORT_MAIN, false, &err);

	if (!check("why_busy_print text", err == 0 && t, "%s", strerror(-err)))
		return;
	printf("---- text ----\n%s--------------\n", t);
	snprintf(want, sizeof(want),
		 "port %u: held by 1 LISTEN socket (127.0.0.1:%u, owner %d/%s fd %d)", PORT_MAIN,
		 PORT_MAIN, getpid(), ODD_COMM_TEXT, m->l);
	check_contains("text: summary with listener owner", t, want);
	check_contains("text: established count", t, ", 1 established, 2 TIME_WAIT (oldest ");
	check_contains("text: other", t, ", 1 other (1 CLOSE_WAIT)");
	snprintf(want, sizeof(want), "meaning: held by a listening socket of PID %d (%s)", getpid(),
		 ODD_COMM_TEXT);
	check_contains("text: meaning", t, want);
	snprintf(want, sizeof(want), "<-> 127.0.0.1:%u  inode %" PRIu64 "  owner %d/%s fd %d",
		 local_port(m->c[3]), inode_of(m->a[3]), getpid(), ODD_COMM_TEXT, m->a[3]);
	check_contains("text: established line", t, want);
	check_contains("text: timewait line", t, "TIME_WAIT   2 sockets, no owner");
	check("text: no control bytes", !strchr(t, '\x01'), "a raw \\x01 from comm");
	free(t);

	t = capture(PORT_MAIN, true, &err);
	if (!check("why_busy_print json", err == 0 && t, "%s", strerror(-err)))
		return;
	printf("---- json ----\n%s--------------\n", t);
	check_contains("json: event", t,
		       "{\"event\":\"why_busy\",\"port\":7555,\"verdict\":\"listen\"");
	snprintf(want, sizeof(want),
		 "\"listen\":[{\"family\":\"ipv4\",\"laddr\":\"127.0.0.1\",\"lport\":%u,"
		 "\"inode\":%" PRIu64 ",",
		 PORT_MAIN, m->l_ino);
	check_contains("json: listener", t, want);
	snprintf(want, sizeof(want), "{\"pid\":%d,\"comm\":\"%s\",\"fd\":%d}", getpid(),
		 ODD_COMM_JSON, m->l);
	check_contains("json: owner with escaped comm", t, want);
	check_contains("json: timewait", t,
		       "\"timewait\":{\"count\":2,\"fin_wait2\":0,\"oldest_age_ms\":");
	check_contains("json: established state", t, "\"state\":\"ESTABLISHED\"");
	check_contains("json: other state", t, "\"state\":\"CLOSE_WAIT\"");
	check_contains("json: scan complete", t, "\"scan_incomplete\":false");
	check("json: one line", t[strlen(t) - 1] == '\n' && strchr(t, '\n') == t + strlen(t) - 1,
	      "newlines");
	free(t);
}

static void test_json_lead(void)
{
	struct why_busy wb;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int err = why_busy_collect(PORT_MAIN, -1, 0, &wb);

	if (!check("why_busy_collect", err == 0, "%s", strerror(-err)))
		return;
	f = open_memstream(&buf, &len);
	why_busy_write_json(&wb, "\"event\":\"bind_conflict\",\"pid\":1", f);
	fclose(f);
	check_contains("json: lead fields", buf,
		       "{\"event\":\"bind_conflict\",\"pid\":1,\"port\":7555,");
	check("json: lead replaces event", !strstr(buf, "why_busy"), "%s", buf);
	free(buf);
	why_busy_free(&wb);
}

/* ---- other shapes ---- */

static bool kernel_at_least(int major, int minor)
{
	struct utsname u;
	int ma = 0, mi = 0;

	if (uname(&u) || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
		return true;
	return ma > major || (ma == major && mi >= minor);
}

static void test_bound_only(void)
{
	struct port_report r;
	int fd = bound_socket(AF_INET, PORT_BOUND, false, 0), err;
	char *t;

	if (!check("bound-only socket", fd >= 0, "%s", strerror(-fd)))
		return;
	if (!kernel_at_least(6, 8)) {
		/* inet_diag shows bound-only sockets since 6.8 (TCPF_BOUND_INACTIVE): say so */
		err = sockdiag_port(PORT_BOUND, &r);
		check("bound-only unseen before 6.8", err == 0 && r.n == 0, "err %d n %d", err, r.n);
		port_report_free(&r);
		t = capture(PORT_BOUND, false, &err);
		check_contains("text: bound-only before 6.8", t,
			       "from a bound-only socket sock_diag cannot show");
		free(t);
		close(fd);
		return;
	}
	err = sockdiag_port(PORT_BOUND, &r);
	check("bound-only seen (TCPF_BOUND_INACTIVE)",
	      err == 0 && r.n == 1 && r.n_bound == 1 && r.n_other == 1 &&
		      r.socks[0].state == SOCKDIAG_STATE_BOUND && r.socks[0].inode == inode_of(fd),
	      "err %d n %d bound %d", err, r.n, r.n_bound);
	port_report_free(&r);
	t = capture(PORT_BOUND, false, &err);
	check_contains("text: bound verdict", t,
		       "is bound to the port without listening or connecting");
	check_contains("text: bound line", t, "BOUND       127.0.0.1:7556  inode");
	free(t);
	close(fd);
}

static void test_ipv6(void)
{
	struct port_report r;
	int fd = bound_socket(AF_INET6, PORT_V6, true, 4), err;
	char *t;

	if (fd == -EADDRNOTAVAIL || fd == -EAFNOSUPPORT) {
		printf("SKIP ipv6: %s\n", strerror(-fd));
		return;
	}
	if (!check("ipv6 listener", fd >= 0, "%s", strerror(-fd)))
		return;
	err = sockdiag_port(PORT_V6, &r);
	check("ipv6 seen",
	      err == 0 && r.n == 1 && r.socks[0].family == AF_INET6 &&
		      !memcmp(r.socks[0].laddr, &in6addr_loopback, 16),
	      "err %d n %d", err, r.n);
	port_report_free(&r);
	t = capture(PORT_V6, false, &err);
	check_contains("text: ipv6 endpoint", t, "([::1]:7558, owner ");
	free(t);
	close(fd);
}

static void test_free_port(void)
{
	struct port_report r;
	int err = sockdiag_port(PORT_FREE, &r);
	char *t;

	check("free port", err == 0 && r.n == 0 && !r.n_listen && !r.n_timewait, "err %d n %d", err,
	      r.n);
	port_report_free(&r);
	t = capture(PORT_FREE, false, &err);
	check_contains("text: free", t, "port 7599: free:");
	free(t);
	t = capture(PORT_FREE, true, &err);
	check_contains("json: free", t,
		       "\"verdict\":\"free\",\"listen\":[],\"timewait\":{\"count\":0,"
		       "\"fin_wait2\":0,\"oldest_age_ms\":null,\"last_expires_ms\":null}");
	free(t);
	err = sockdiag_port(0, &r);
	check("port 0 refused", err == -EINVAL, "err %d", err);
}

/* a child in a network namespace of its own, listening on PORT_MAIN there */
static pid_t start_netns_child(int ready_fd)
{
	pid_t pid = fork();
	int l;

	if (pid)
		return pid;
	if (unshare(CLONE_NEWNET) || lo_up())
		_exit(1);
	l = bound_socket(AF_INET, PORT_MAIN, false, 4);
	if (l < 0 || write(ready_fd, &(uint64_t){ inode_of(l) }, 8) != 8)
		_exit(1);
	pause();
	_exit(0);
}

static void test_netns_fd(struct main_port *m)
{
	struct port_report r;
	char path[64];
	uint64_t child_ino = 0;
	int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC), err, p[2];
	pid_t child;

	err = sockdiag_port_netns(PORT_MAIN, fd, &r);
	check("netns fd: own namespace", err == 0 && r.n_listen == 1 && r.n == 5,
	      "err %d listen %d", err, r.n_listen);
	port_report_free(&r);
	close(fd);

	if (pipe(p))
		return;
	child = start_netns_child(p[1]);
	if (read(p[0], &child_ino, 8) != 8)
		child_ino = 0;
	snprintf(path, sizeof(path), "/proc/%d/ns/net", child);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	err = sockdiag_port_netns(PORT_MAIN, fd, &r);
	check("netns fd: another namespace",
	      child_ino && err == 0 && r.n == 1 && r.n_listen == 1 &&
		      r.socks[0].inode == child_ino && child_ino != m->l_ino,
	      "child inode %" PRIu64 " err %d n %d", child_ino, err, r.n);
	port_report_free(&r);
	close(fd);
	check("netns fd: thread back home",
	      same_file("/proc/thread-self/ns/net", "/proc/self/ns/net") && in_own_netns(),
	      "thread left its namespace");
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	close(p[0]);
	close(p[1]);
}

/* the listener is shared with a child: two owners */
static void test_shared_listener(void)
{
	int l = bound_socket(AF_INET, PORT_SHARED, true, 4), p[2];
	struct why_busy wb;
	pid_t child;
	char want[128], *buf = NULL;
	size_t len = 0;
	FILE *f;
	int n;

	if (l < 0 || pipe(p))
		return (void)check("shared listener", false, "setup");
	child = fork();
	if (child == 0) {
		char c;

		close(p[1]);
		if (read(p[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(p[0]);
	why_busy_collect(PORT_SHARED, -1, 0, &wb);
	holders_of(&wb.scan, inode_of(l), &n);
	check("shared listener: two owners",
	      n == 2 && has_holder(&wb.scan, inode_of(l), getpid(), l) &&
		      has_holder(&wb.scan, inode_of(l), child, l),
	      "n %d", n);
	f = open_memstream(&buf, &len);
	why_busy_write_text(&wb, f);
	fclose(f);
	snprintf(want, sizeof(want), "owners %d/%s fd %d, %d/%s fd %d", getpid(), ODD_COMM_TEXT, l,
		 child, ODD_COMM_TEXT, l);
	check_contains("text: two owners", buf, want);
	free(buf);
	why_busy_free(&wb);
	close(p[1]);
	waitpid(child, NULL, 0);
	close(l);
}

/* ---- bind() outcomes the explanations promise ---- */

static void expect_bind(const char *name, uint16_t port, bool reuseaddr, int want)
{
	int fd = bound_socket(AF_INET, port, reuseaddr, 4);
	int got = fd < 0 ? fd : 0;

	check(name, got == want, "bind+listen %s, want %s", got ? strerror(-got) : "ok",
	      want ? strerror(-want) : "ok");
	if (fd >= 0)
		close(fd);
}

/* PORT_MAIN after everything but the TIME_WAITs is gone */
static void test_timewait_only(struct main_port *m)
{
	struct port_report r;
	int err;
	char *t;

	close(m->l);
	close(m->a[2]); /* CLOSE_WAIT -> LAST_ACK -> gone */
	close_server_first(m->a[3], m->c[3]);
	err = wait_report(PORT_MAIN, (struct want){ 0, 0, 3, 0 }, &r);
	check("timewait only", err == 0 && r.n == 3 && r.n_timewait == 3, "err %d n %d tw %d", err,
	      r.n, r.n_timewait);
	port_report_free(&r);
	t = capture(PORT_MAIN, false, &err);
	printf("---- text ----\n%s--------------\n", t);
	check_contains("text: timewait verdict", t, "only TIME_WAIT sockets hold the port");
	check_contains("text: timewait summary", t,
		       "port 7555: no LISTEN socket, 0 established, 3 TIME_WAIT (oldest");
	free(t);
	t = capture(PORT_MAIN, true, &err);
	check_contains("json: timewait verdict", t,
		       "\"verdict\":\"timewait\",\"listen\":[],\"timewait\":{\"count\":3,");
	free(t);
	expect_bind("TIME_WAIT only: bind without SO_REUSEADDR fails", PORT_MAIN, false,
		    -EADDRINUSE);
	expect_bind("TIME_WAIT only (old sockets had SO_REUSEADDR): bind with it works", PORT_MAIN,
		    true, 0);
}

static void test_timewait_noreuse(void)
{
	int l = bound_socket(AF_INET, PORT_NOREUSE, false, 4);
	int c = connect_to(AF_INET, PORT_NOREUSE);
	int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	struct port_report r;

	if (!check("no-reuse setup", l >= 0 && c >= 0 && a >= 0, "setup"))
		return;
	close_server_first(a, c);
	close(l);
	wait_report(PORT_NOREUSE, (struct want){ 0, 0, 1, 0 }, &r);
	check("no-reuse timewait", r.n_timewait == 1 && r.n == 1, "n %d", r.n);
	port_report_free(&r);
	expect_bind("TIME_WAIT only (old socket without SO_REUSEADDR): bind with it fails",
		    PORT_NOREUSE, true, -EADDRINUSE);
}

static void test_connections_only(void)
{
	int l = bound_socket(AF_INET, PORT_CONN, true, 4);
	int c = connect_to(AF_INET, PORT_CONN);
	int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	char *t;
	int err;

	if (!check("connections setup", l >= 0 && c >= 0 && a >= 0, "setup"))
		return;
	close(l);
	t = capture(PORT_CONN, false, &err);
	check_contains("text: connections verdict", t,
		       "nothing listens, but 1 connection still uses the port");
	free(t);
	expect_bind("connections only: bind without SO_REUSEADDR fails", PORT_CONN, false,
		    -EADDRINUSE);
	expect_bind("connections only (with SO_REUSEADDR): bind+listen with it works", PORT_CONN,
		    true, 0);
	close(a);
	close(c);
}

/* ---- the scan under churn and against a huge fd table ---- */

static pid_t start_churn(void)
{
	pid_t pid = fork();

	if (pid)
		return pid;
	for (;;) {
		pid_t k = fork();

		if (k == 0) {
			int s[8];

			for (int i = 0; i < 8; i++)
				s[i] = socket(AF_INET, SOCK_STREAM, 0);
			usleep(500);
			for (int i = 0; i < 8; i++)
				close(s[i]);
			_exit(0);
		}
		if (k > 0 && (k & 1))
			waitpid(k, NULL,
				0); /* reap half at once, leave half for a moment as zombies */
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
}

static void test_churn(void)
{
	int l = bound_socket(AF_INET, PORT_SHARED, true, 4);
	uint64_t ino = inode_of(l);
	pid_t churn = start_churn();
	bool ok = true;
	int runs = 0;

	usleep(20000);
	for (uint64_t end = now_ms() + 1000; now_ms() < end; runs++) {
		struct holder_scan s;
		int err = holders_find(&ino, 1, 10, 1000, &s);

		ok &= err == 0 && has_holder(&s, ino, getpid(), l);
		holder_scan_free(&s);
	}
	kill(churn, SIGKILL);
	waitpid(churn, NULL, 0);
	check("holders: processes exiting during the scan", ok && runs > 0, "%d runs", runs);
	close(l);
}

/* a process with as many fds as its hard limit allows; writes how many it got */
static pid_t start_fd_hog(int ready_fd)
{
	pid_t pid = fork();
	struct rlimit rl;
	int fd, n = 0;

	if (pid)
		return pid;
	/* raising the hard limit would need CAP_SYS_RESOURCE: take what there is */
	if (!getrlimit(RLIMIT_NOFILE, &rl)) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	fd = open("/dev/null", O_RDONLY);
	while (fd >= 0 && dup(fd) >= 0)
		n++;
	if (write(ready_fd, &n, sizeof(n)) != sizeof(n))
		_exit(1);
	pause();
	_exit(0);
}

#define N_HOGS 3

static void test_fd_hog(void)
{
	uint64_t ino = 1, t0, total = 0;
	struct holder_scan s;
	pid_t hog[N_HOGS];
	int p[2], err, n;

	if (pipe(p))
		return;
	for (int i = 0; i < N_HOGS; i++) {
		hog[i] = start_fd_hog(p[1]);
		if (read(p[0], &n, sizeof(n)) == sizeof(n))
			total += n;
	}
	t0 = now_ms();
	err = holders_find(&ino, 1, 10, 5, &s);
	t0 = now_ms() - t0;
	check("holders: time budget bounds huge fd tables",
	      err == 0 && s.gave_up && !strcmp(s.why, "time budget") && t0 < 5 + 50,
	      "err %d gave_up %d took %" PRIu64 " ms, %" PRIu64 " fds", err, s.gave_up, t0,
	      s.fds_read);
	printf("     5 ms budget: stopped after %" PRIu64 " ms, %" PRIu64 " fds read\n", t0,
	       s.fds_read);
	holder_scan_free(&s);
	t0 = now_ms();
	err = holders_find(&ino, 1, 10, 5000, &s);
	t0 = now_ms() - t0;
	check("holders: full scan reads the huge fd tables",
	      err == 0 && !s.gave_up && s.fds_read >= total,
	      "err %d gave_up %d fds %" PRIu64 " of %" PRIu64, err, s.gave_up, s.fds_read, total);
	printf("     full scan: %" PRIu64 " fds (%" PRIu64
	       " in %d hogs) of %u processes in %" PRIu64 " ms\n",
	       s.fds_read, total, N_HOGS, s.procs, t0);
	holder_scan_free(&s);
	for (int i = 0; i < N_HOGS; i++) {
		kill(hog[i], SIGKILL);
		waitpid(hog[i], NULL, 0);
	}
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	struct main_port m = { 0 };
	int err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!in_own_netns()) {
		fprintf(stderr,
			"refusing to run in the initial network namespace: use ip netns exec\n");
		return 2;
	}
	err = lo_up();
	if (err) {
		fprintf(stderr, "lo up: %s\n", strerror(-err));
		return 2;
	}
	prctl(PR_SET_NAME, ODD_COMM);
	err = setup_main(&m);
	if (!check("setup main port", err == 0, "%s", strerror(-err)))
		return 1;
	test_main_report(&m);
	test_client_side(&m);
	test_holders(&m);
	test_why_busy_main(&m);
	test_json_lead();
	test_netns_fd(&m);
	test_bound_only();
	test_ipv6();
	test_free_port();
	test_shared_listener();
	test_timewait_only(&m);
	test_timewait_noreuse();
	test_connections_only();
	test_churn();
	test_fd_hog();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
