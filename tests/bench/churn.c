// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * churn: loopback TCP connection churn, the load of closetrace's benchmark.
 *
 * Opens and closes TCP connections to itself as fast as it can for a fixed
 * time, then prints one JSON line:
 *   {"mode":..,"seconds":..,"connections":N,"rate":N,"errors":N,...}
 *
 * Modes (who closes, and how):
 *   client-first  one request/response, the client closes (client TIME_WAIT)
 *   server-first  one request/response, the server closes, the client closes
 *                 on EOF (server TIME_WAIT)
 *   rst           one request/response, the client aborts: SO_LINGER {1,0}
 *   keepalive     2..K request/responses per connection (K = -k), then the
 *                 client closes first
 *
 * With -l FILE every connection is logged as the ground truth of the
 * stress test (scripts/stress): one line per connection, written when it has
 * been closed on the client side,
 *   CLIENT_ADDR CLIENT_PORT SERVER_ADDR SERVER_PORT FIRST
 * where FIRST says who sent the first FIN or RST: client or server (the
 * mode decides it: the server closes first only in server-first).  With -n
 * the run ends after that many connections instead of at -t.
 *
 * Meant to run in a private network namespace (scripts/bench makes one) with
 * a wide ip_local_port_range, tcp_tw_reuse=1 and a big tcp_max_tw_buckets.
 * Clients spread over -a destination addresses in 127.0.0.0/8 so the
 * 4-tuples differ and ephemeral ports last.  The server is one epoll loop per
 * thread, each with its own SO_REUSEPORT listener on INADDR_ANY:port.
 *
 * libc + pthread only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REQ_LEN 16
#define RESP_LEN 32
#define MAX_THREADS 64
#define MAX_ADDRS 4096
#define JOIN_GRACE_S 5 /* how long stuck clients may run past the deadline */

enum mode { M_CLIENT_FIRST, M_SERVER_FIRST, M_RST, M_KEEPALIVE };
static const char *const mode_names[] = { "client-first", "server-first", "rst", "keepalive" };

struct counters {
	_Atomic uint64_t conns;
	_Atomic uint64_t exchanges;
	_Atomic uint64_t errors;
	char pad[64 - 3 * sizeof(uint64_t)];
} __attribute__((aligned(64)));

static enum mode mode = M_CLIENT_FIRST;
static double duration = 10;
static int port = 900;
static int n_clients = 4;
static int n_servers = 2;
static int n_addrs = 64;
static int max_exchanges = 10;
static long max_conns;		/* -n: stop after this many connections (0: -t only) */
static _Atomic long conns_started;
static FILE *logf;		/* -l: the ground-truth log */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static struct in_addr addrs[MAX_ADDRS];
static struct counters client_ctr[MAX_THREADS];
static struct counters server_ctr[MAX_THREADS];
static _Atomic int clients_done;
static _Atomic int stop_servers;
static struct timespec deadline;

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_error[128];

/* per-fd count of request bytes received but not yet answered */
static unsigned char *pending;
static size_t pending_len;

static void note_error(const char *what, int err)
{
	pthread_mutex_lock(&err_lock);
	if (!first_error[0])
		snprintf(first_error, sizeof(first_error), "%s: %s", what, strerror(err));
	pthread_mutex_unlock(&err_lock);
}

static double ts_sec(const struct timespec *t)
{
	return t->tv_sec + t->tv_nsec / 1e9;
}

static double now_sec(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return ts_sec(&t);
}

static int past_deadline(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec > deadline.tv_sec ||
	       (t.tv_sec == deadline.tv_sec && t.tv_nsec >= deadline.tv_nsec);
}

static uint32_t xorshift(uint32_t *s)
{
	uint32_t x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

/*
 * Log a connection (-l): its client 4-tuple and who closes first.  Lines are
 * built per connection and written under a lock; stdio buffers them.
 */
static void log_connection(int fd, const char *first)
{
	struct sockaddr_in l, r;
	socklen_t ll = sizeof(l), rl = sizeof(r);
	char la[INET_ADDRSTRLEN], ra[INET_ADDRSTRLEN];

	if (!logf)
		return;
	if (getsockname(fd, (struct sockaddr *)&l, &ll) || getpeername(fd, (struct sockaddr *)&r, &rl)) {
		note_error("getsockname", errno);
		return;
	}
	inet_ntop(AF_INET, &l.sin_addr, la, sizeof(la));
	inet_ntop(AF_INET, &r.sin_addr, ra, sizeof(ra));
	pthread_mutex_lock(&log_lock);
	fprintf(logf, "%s %u %s %u %s\n", la, ntohs(l.sin_port), ra, ntohs(r.sin_port), first);
	pthread_mutex_unlock(&log_lock);
}

/* ---------------------------------------------------------------- server */

static int make_listener(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_ANY) };
	int one = 1, fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* accepted sockets inherit TCP_NODELAY from the listener */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 4096)) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Read what the peer sent and answer each complete request.  Returns 1 while
 * the connection stays open, 0 once it has been closed here. */
static int serve_read(int fd, struct counters *ctr)
{
	static const char resp[RESP_LEN * 8];
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf));
	size_t total, reqs;

	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 1;
		/* the peer's abortive close, expected in rst mode */
		if (!(errno == ECONNRESET && mode == M_RST)) {
			atomic_fetch_add_explicit(&ctr->errors, 1, memory_order_relaxed);
			note_error("server read", errno);
		}
		close(fd);
		return 0;
	}
	if (n == 0) {
		close(fd);
		return 0;
	}
	if ((size_t)fd >= pending_len) {
		atomic_fetch_add_explicit(&ctr->errors, 1, memory_order_relaxed);
		note_error("server fd table", EMFILE);
		close(fd);
		return 0;
	}
	total = pending[fd] + (size_t)n;
	reqs = total / REQ_LEN;
	pending[fd] = total % REQ_LEN;
	while (reqs) {
		size_t batch = reqs > 8 ? 8 : reqs;
		ssize_t w = write(fd, resp, batch * RESP_LEN);

		if (w != (ssize_t)(batch * RESP_LEN)) {
			atomic_fetch_add_explicit(&ctr->errors, 1, memory_order_relaxed);
			note_error("server write", w < 0 ? errno : EIO);
			close(fd);
			return 0;
		}
		reqs -= batch;
		if (mode == M_SERVER_FIRST) {
			close(fd); /* answered: the server closes first */
			return 0;
		}
	}
	return 1;
}

static void *server_main(void *arg)
{
	struct counters *ctr = &server_ctr[(long)arg];
	struct epoll_event ev, evs[256];
	int lfd, ep;

	lfd = make_listener();
	if (lfd < 0) {
		note_error("listen", errno);
		atomic_fetch_add(&ctr->errors, 1);
		return NULL;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) {
		note_error("epoll_create1", errno);
		atomic_fetch_add(&ctr->errors, 1);
		close(lfd);
		return NULL;
	}
	ev.events = EPOLLIN;
	ev.data.fd = lfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);

	while (!atomic_load_explicit(&stop_servers, memory_order_relaxed)) {
		int n = epoll_wait(ep, evs, 256, 100);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd != lfd) {
				serve_read(fd, ctr);
				continue;
			}
			/* drain the accept queue, a bounded batch at a time */
			for (int k = 0; k < 64; k++) {
				int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

				if (c < 0) {
					if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
						atomic_fetch_add_explicit(&ctr->errors, 1,
									  memory_order_relaxed);
						note_error("accept", errno);
					}
					break;
				}
				if ((size_t)c < pending_len)
					pending[c] = 0;
				/* the request is often there already: skip one epoll trip */
				if (!serve_read(c, ctr))
					continue;
				ev.events = EPOLLIN;
				ev.data.fd = c;
				if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev)) {
					atomic_fetch_add_explicit(&ctr->errors, 1, memory_order_relaxed);
					note_error("epoll_ctl", errno);
					close(c);
				}
			}
		}
	}
	close(ep);
	close(lfd);
	return NULL;
}

/* ---------------------------------------------------------------- client */

static int read_full(int fd, char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EPIPE; /* early EOF */
			return -1;
		}
		got += n;
	}
	return 0;
}

/* One connection's life.  Returns the number of exchanges, or -1. */
static int one_connection(const struct in_addr *dst, uint32_t *rng)
{
	static const char req[REQ_LEN];
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = *dst };
	char buf[RESP_LEN];
	int one = 1, fd, nx = 1;
	const char *what;

	if (mode == M_KEEPALIVE)
		nx = 2 + (int)(xorshift(rng) % (uint32_t)(max_exchanges - 1));

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		note_error("socket", errno);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	what = "connect";
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		goto fail;
	/* connected: a connection both sides will close, whatever happens next */
	log_connection(fd, mode == M_SERVER_FIRST ? "server" : "client");
	for (int i = 0; i < nx; i++) {
		what = "client write";
		if (write(fd, req, REQ_LEN) != REQ_LEN)
			goto fail;
		what = "client read";
		if (read_full(fd, buf, RESP_LEN))
			goto fail;
	}
	switch (mode) {
	case M_SERVER_FIRST:
		/* wait for the server's FIN, then close: CLOSE_WAIT -> LAST_ACK */
		what = "client read EOF";
		for (;;) {
			ssize_t n = read(fd, buf, sizeof(buf));

			if (n == 0)
				break;
			if (n < 0 && errno == EINTR)
				continue;
			if (n > 0)
				errno = EPROTO;
			goto fail;
		}
		break;
	case M_RST: {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		what = "SO_LINGER";
		if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)))
			goto fail;
		break;
	}
	default:
		break;
	}
	close(fd);
	return nx;
fail:
	note_error(what, errno);
	if (errno == EADDRNOTAVAIL) {
		/* out of ephemeral ports: do not spin */
		struct timespec ms = { 0, 1000000 };

		nanosleep(&ms, NULL);
	}
	close(fd);
	return -1;
}

static void *client_main(void *arg)
{
	long id = (long)arg;
	struct counters *ctr = &client_ctr[id];
	uint32_t rng = 0x9e3779b9u ^ (uint32_t)(id * 2654435761u) ^ (uint32_t)getpid();
	unsigned int a = (unsigned int)(id * 7919);

	if (!rng)
		rng = 1;
	while (!past_deadline()) {
		int r;

		if (max_conns && atomic_fetch_add(&conns_started, 1) >= max_conns)
			break;
		r = one_connection(&addrs[a++ % (unsigned int)n_addrs], &rng);

		if (r < 0) {
			atomic_fetch_add_explicit(&ctr->errors, 1, memory_order_relaxed);
			continue;
		}
		atomic_fetch_add_explicit(&ctr->conns, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&ctr->exchanges, (uint64_t)r, memory_order_relaxed);
	}
	atomic_fetch_add(&clients_done, 1);
	return NULL;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: churn [-t SECONDS] [-m client-first|server-first|rst|keepalive]\n"
		"             [-p PORT] [-c CLIENT_THREADS] [-s SERVER_THREADS]\n"
		"             [-a DEST_ADDRS] [-k MAX_EXCHANGES] [-n CONNECTIONS] [-l LOG]\n"
		"Loopback TCP connection churn; prints one JSON line.  Run it in a\n"
		"private network namespace (see scripts/bench).\n"
		"  -t  duration in seconds (default 10)\n"
		"  -m  who closes (default client-first)\n"
		"  -p  server port, below 32768 (default 900)\n"
		"  -c  client threads (default 4), -s server threads (default 2)\n"
		"  -a  destination addresses 127.0.0.1.. to spread over (default 64)\n"
		"  -k  keepalive: up to this many exchanges per connection (default 10)\n"
		"  -n  stop after this many connections (-t still bounds the run)\n"
		"  -l  log every connection's 4-tuple and who closes first to this file\n");
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

static uint64_t sum(struct counters *c, int n, int which)
{
	uint64_t s = 0;

	for (int i = 0; i < n; i++)
		s += atomic_load(which == 0 ? &c[i].conns : which == 1 ? &c[i].exchanges : &c[i].errors);
	return s;
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			putchar('\\');
		if ((unsigned char)*s >= 0x20)
			putchar(*s);
	}
	putchar('"');
}

int main(int argc, char **argv)
{
	pthread_t clients[MAX_THREADS], servers[MAX_THREADS];
	struct rlimit rl;
	double start, elapsed;
	uint64_t conns, exch, cerr, serr;
	int opt, stuck = 0;
	char *end;

	while ((opt = getopt(argc, argv, "t:m:p:c:s:a:k:n:l:h")) != -1) {
		switch (opt) {
		case 't':
			errno = 0;
			duration = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(duration > 0 && duration <= 86400)) {
				fprintf(stderr, "churn: bad -t: %s\n", optarg);
				return 2;
			}
			break;
		case 'm': {
			int found = 0;

			for (int i = 0; i < 4; i++)
				if (!strcmp(optarg, mode_names[i])) {
					mode = (enum mode)i;
					found = 1;
				}
			if (!found) {
				fprintf(stderr, "churn: bad -m: %s\n", optarg);
				return 2;
			}
			break;
		}
		case 'p':
			if (parse_int(optarg, 1, 32767, &port)) {
				fprintf(stderr, "churn: -p wants a port in 1..32767\n");
				return 2;
			}
			break;
		case 'c':
			if (parse_int(optarg, 1, MAX_THREADS, &n_clients)) {
				fprintf(stderr, "churn: -c wants 1..%d\n", MAX_THREADS);
				return 2;
			}
			break;
		case 's':
			if (parse_int(optarg, 1, MAX_THREADS, &n_servers)) {
				fprintf(stderr, "churn: -s wants 1..%d\n", MAX_THREADS);
				return 2;
			}
			break;
		case 'a':
			if (parse_int(optarg, 1, MAX_ADDRS, &n_addrs)) {
				fprintf(stderr, "churn: -a wants 1..%d\n", MAX_ADDRS);
				return 2;
			}
			break;
		case 'k':
			if (parse_int(optarg, 2, 1000, &max_exchanges)) {
				fprintf(stderr, "churn: -k wants 2..1000\n");
				return 2;
			}
			break;
		case 'n': {
			int n;

			if (parse_int(optarg, 1, 100000000, &n)) {
				fprintf(stderr, "churn: -n wants 1..100000000\n");
				return 2;
			}
			max_conns = n;
			break;
		}
		case 'l':
			logf = fopen(optarg, "we");
			if (!logf) {
				fprintf(stderr, "churn: %s: %s\n", optarg, strerror(errno));
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	signal(SIGPIPE, SIG_IGN);
	/* hard bound, whatever happens */
	alarm((unsigned int)duration + 2 * JOIN_GRACE_S + 5);

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 20))
		pending_len = 1u << 20;
	else
		pending_len = rl.rlim_cur;
	pending = calloc(pending_len, 1);
	if (!pending) {
		fprintf(stderr, "churn: out of memory\n");
		return 1;
	}

	/* 127.0.0.1, 127.0.0.2, ... skipping .0 and .255 in the last octet */
	for (uint32_t i = 0, a = 0x7f000001; i < (uint32_t)n_addrs; a++) {
		if ((a & 0xff) == 0 || (a & 0xff) == 0xff)
			continue;
		addrs[i++].s_addr = htonl(a);
	}

	/* listeners first, so that the first connects find them */
	for (long i = 0; i < n_servers; i++) {
		if (pthread_create(&servers[i], NULL, server_main, (void *)i)) {
			fprintf(stderr, "churn: pthread_create failed\n");
			return 1;
		}
	}
	for (int tries = 0; tries < 200; tries++) {
		/* wait until the port accepts (listeners are bound) */
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
					  .sin_addr.s_addr = htonl(0x7f000001) };
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int ok = fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		struct timespec ms = { 0, 10000000 };

		if (ok)
			log_connection(fd, "client"); /* the server reads EOF, then closes */
		if (fd >= 0)
			close(fd);
		if (ok)
			break;
		if (first_error[0] || tries == 199) {
			fprintf(stderr, "churn: server did not come up: %s\n",
				first_error[0] ? first_error : "connect refused");
			return 1;
		}
		nanosleep(&ms, NULL);
	}

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	start = ts_sec(&deadline);
	deadline.tv_sec += (time_t)duration;
	deadline.tv_nsec += (long)((duration - (double)(time_t)duration) * 1e9);
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	for (long i = 0; i < n_clients; i++) {
		if (pthread_create(&clients[i], NULL, client_main, (void *)i)) {
			fprintf(stderr, "churn: pthread_create failed\n");
			return 1;
		}
	}
	/* bounded wait: a client stuck in a blocking call is abandoned */
	while (atomic_load(&clients_done) < n_clients) {
		struct timespec ms = { 0, 10000000 };

		if (now_sec() > start + duration + JOIN_GRACE_S) {
			stuck = n_clients - atomic_load(&clients_done);
			break;
		}
		nanosleep(&ms, NULL);
	}
	elapsed = now_sec() - start;
	conns = sum(client_ctr, n_clients, 0);
	exch = sum(client_ctr, n_clients, 1);
	cerr = sum(client_ctr, n_clients, 2);
	serr = sum(server_ctr, n_servers, 2);

	printf("{\"mode\":\"%s\",\"seconds\":%.3f,\"connections\":%llu,\"rate\":%.0f,\"errors\":%llu,"
	       "\"client_errors\":%llu,\"server_errors\":%llu,\"exchanges\":%llu,"
	       "\"client_threads\":%d,\"server_threads\":%d,\"addresses\":%d,\"stuck_threads\":%d,"
	       "\"first_error\":",
	       mode_names[mode], elapsed, (unsigned long long)conns, elapsed > 0 ? conns / elapsed : 0.0,
	       (unsigned long long)(cerr + serr), (unsigned long long)cerr, (unsigned long long)serr,
	       (unsigned long long)exch, n_clients, n_servers, n_addrs, stuck);
	if (first_error[0])
		json_string(first_error);
	else
		fputs("null", stdout);
	puts("}");
	fflush(stdout);
	if (logf && fclose(logf)) {
		fprintf(stderr, "churn: writing the log: %s\n", strerror(errno));
		_exit(1);
	}
	if (stuck)
		_exit(1);

	atomic_store(&stop_servers, 1);
	for (int i = 0; i < n_servers; i++)
		pthread_join(servers[i], NULL);
	for (int i = 0; i < n_clients; i++)
		pthread_join(clients[i], NULL);
	free(pending);
	return 0;
}
