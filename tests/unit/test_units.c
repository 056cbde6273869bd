// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Unit tests for the user-space logic: option parsing, formatting and
 * correlation.  No root, no BPF.  Prints "PASS name" / "FAIL name: why" per
 * test and "N passed, N failed" at the end.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "correlate.h"
#include "filter.h"
#include "options.h"
#include "output.h"
#include "summary.h"
#include "trace_file.h"
#include "tw_reuse.h"

static int passed, failed;
static const char *current;
static bool current_failed;

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			printf("FAIL %s: %s:%d: %s\n", current, __FILE__, __LINE__, #cond); \
			current_failed = true;                                        \
			return;                                                       \
		}                                                                     \
	} while (0)

#define CHECK_STR(a, b)                                                                       \
	do {                                                                                  \
		if (strcmp((a), (b))) {                                                       \
			printf("FAIL %s: %s:%d: '%s' != '%s'\n", current, __FILE__, __LINE__, \
			       (a), (b));                                                     \
			current_failed = true;                                                \
			return;                                                               \
		}                                                                             \
	} while (0)

#define CHECK_HAS(hay, needle)                                                              \
	do {                                                                                \
		if (!strstr((hay), (needle))) {                                             \
			printf("FAIL %s: %s:%d: '%s' not in '%s'\n", current, __FILE__, __LINE__, \
			       (needle), (hay));                                            \
			current_failed = true;                                              \
			return;                                                             \
		}                                                                           \
	} while (0)

static void run(const char *name, void (*fn)(void))
{
	current = name;
	current_failed = false;
	fn();
	if (current_failed) {
		failed++;
	} else {
		passed++;
		printf("PASS %s\n", name);
	}
}

/* options_parse prints errors to stderr: silence them while testing */
static int parse_quiet(int argc, char **argv, struct ct_options *o)
{
	int saved = dup(2), devnull = open("/dev/null", 1), rc;

	fflush(stderr);
	dup2(devnull, 2);
	rc = options_parse(argc, argv, o);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(devnull);
	return rc;
}

#define ARGV(...) (char *[]){ "closetrace", __VA_ARGS__, NULL }
#define ARGC(...) (int)(sizeof((char *[]){ "closetrace", __VA_ARGS__ }) / sizeof(char *))

static void test_port_list(void)
{
	uint16_t p[CT_MAX_PORTS];
	char err[128];

	CHECK(parse_port_list("80", p, CT_MAX_PORTS, err, sizeof(err)) == 1 && p[0] == 80);
	CHECK(parse_port_list("80,443,65535", p, CT_MAX_PORTS, err, sizeof(err)) == 3);
	CHECK(p[1] == 443 && p[2] == 65535);
	CHECK(parse_port_list("0", p, CT_MAX_PORTS, err, sizeof(err)) == -1);
	CHECK(parse_port_list("65536", p, CT_MAX_PORTS, err, sizeof(err)) == -1);
	CHECK(parse_port_list("80,", p, CT_MAX_PORTS, err, sizeof(err)) == -1);
	CHECK(parse_port_list(",80", p, CT_MAX_PORTS, err, sizeof(err)) == -1);
	CHECK(parse_port_list("8o", p, CT_MAX_PORTS, err, sizeof(err)) == -1);
	CHECK(parse_port_list("-1", p, CT_MAX_PORTS, err, sizeof(err)) == -1);
	CHECK(parse_port_list("", p, CT_MAX_PORTS, err, sizeof(err)) == -1);
	CHECK(parse_port_list("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", p, CT_MAX_PORTS, err,
			      sizeof(err)) == -1);
	CHECK_HAS(err, "too many");
}

static void test_options_valid(void)
{
	struct ct_options o;

	CHECK(options_parse(ARGC("-p", "42", "-4", "--lport", "80,443", "--rport", "9", "-d", "1.5",
				 "--json", "--states", "-T"),
			    ARGV("-p", "42", "-4", "--lport", "80,443", "--rport", "9", "-d", "1.5",
				 "--json", "--states", "-T"),
			    &o) == 0);
	CHECK(o.pid == 42 && o.family == 4 && o.n_lports == 2 && o.lports[1] == 443);
	CHECK(o.n_rports == 1 && o.rports[0] == 9 && o.duration == 1.5);
	CHECK(o.json && o.states && o.timestamps && !o.verbose);
	CHECK(options_parse(ARGC("-6", "--netns", "4026531840"), ARGV("-6", "--netns", "4026531840"),
			    &o) == 0);
	CHECK(o.family == 6 && o.netns == 4026531840u);
}

static void test_options_invalid(void)
{
	struct ct_options o;

	CHECK(parse_quiet(ARGC("-p", "abc"), ARGV("-p", "abc"), &o) == -1);
	CHECK(parse_quiet(ARGC("-p", "0"), ARGV("-p", "0"), &o) == -1);
	CHECK(parse_quiet(ARGC("-p", "-5"), ARGV("-p", "-5"), &o) == -1);
	CHECK(parse_quiet(ARGC("-4", "-6"), ARGV("-4", "-6"), &o) == -1);
	CHECK(parse_quiet(ARGC("--lport", "99999"), ARGV("--lport", "99999"), &o) == -1);
	CHECK(parse_quiet(ARGC("--rport", "a,b"), ARGV("--rport", "a,b"), &o) == -1);
	CHECK(parse_quiet(ARGC("-d", "0"), ARGV("-d", "0"), &o) == -1);
	CHECK(parse_quiet(ARGC("-d", "x"), ARGV("-d", "x"), &o) == -1);
	CHECK(parse_quiet(ARGC("--nope"), ARGV("--nope"), &o) == -1);
	CHECK(parse_quiet(ARGC("extra"), ARGV("extra"), &o) == -1);
	CHECK(parse_quiet(ARGC("-w", "-", "--print"), ARGV("-w", "-", "--print"), &o) == -1);
	CHECK(parse_quiet(ARGC("-r", "f", "-w", "g"), ARGV("-r", "f", "-w", "g"), &o) == -1);
	CHECK(parse_quiet(ARGC("--rotate", "1M"), ARGV("--rotate", "1M"), &o) == -1);
	CHECK(parse_quiet(ARGC("-i", "1"), ARGV("-i", "1"), &o) == -1);
	CHECK(parse_quiet(ARGC("--watch", "0"), ARGV("--watch", "0"), &o) == -1);
	CHECK(parse_quiet(ARGC("--summary", "--tw-reuse"), ARGV("--summary", "--tw-reuse"), &o) == -1);
}

static void test_duration_format(void)
{
	char b[32];

	format_duration(812, b, sizeof(b));
	CHECK_STR(b, "812ns");
	format_duration(41200, b, sizeof(b));
	CHECK_STR(b, "41.2us");
	format_duration(1200000, b, sizeof(b));
	CHECK_STR(b, "1.20ms");
	format_duration(60840000000ULL, b, sizeof(b));
	CHECK_STR(b, "60.84s");
}

static void test_addr_format(void)
{
	uint8_t a[16] = { 127, 0, 0, 1 };
	char b[64];

	format_addr(AF_INET, a, b, sizeof(b));
	CHECK_STR(b, "127.0.0.1");
	memset(a, 0, 16);
	a[15] = 1;
	format_addr(AF_INET6, a, b, sizeof(b));
	CHECK_STR(b, "::1");
	inet_pton(AF_INET6, "::ffff:10.1.2.3", a);
	format_addr(AF_INET6, a, b, sizeof(b));
	CHECK_STR(b, "::ffff:10.1.2.3");
}

static void sample_close(struct ct_record *r)
{
	memset(r, 0, sizeof(*r));
	r->kind = CT_REC_CLOSE;
	r->ts_ns = 1000000000ULL;
	r->conn_id = 4097;
	r->pid = 77;
	strcpy(r->comm, "cur\"l\n");
	r->family = AF_INET;
	r->laddr[0] = 127, r->laddr[3] = 1;
	r->raddr[0] = 127, r->raddr[3] = 2;
	r->lport = 40000;
	r->rport = 8080;
	r->netns = 4026531840u;
	r->initiator = CT_INIT_LOCAL;
	r->flags = CT_F_TIMEWAIT;
	r->visited = 1 << TCP_ESTABLISHED | 1 << TCP_FIN_WAIT1 | 1 << TCP_FIN_WAIT2 | 1 << TCP_CLOSE;
	r->state_ns[TCP_ESTABLISHED] = 5000;
	r->state_ns[TCP_FIN_WAIT1] = 0; /* visited with zero time still shows */
	r->state_ns[TCP_FIN_WAIT2] = 7;
}

static char *render(const struct ct_record *r, bool json)
{
	static char *buf;
	size_t len;
	FILE *f;
	struct ct_output o = { .json = json, .mono_to_real_ns = 1700000000000000000LL };

	free(buf);
	f = open_memstream(&buf, &len);
	o.out = f;
	output_record(&o, r);
	fclose(f);
	return buf;
}

static void test_json_close(void)
{
	struct ct_record r;
	char *s;

	sample_close(&r);
	s = render(&r, true);
	CHECK_HAS(s, "{\"event\":\"close\",\"conn_id\":4097,\"ts\":1700000001.000000,");
	CHECK_HAS(s, "\"comm\":\"cur\\\"l\\u000a\"");
	CHECK_HAS(s, "\"laddr\":\"127.0.0.1\",\"lport\":40000,\"raddr\":\"127.0.0.2\",\"rport\":8080");
	CHECK_HAS(s, "\"initiator\":\"local\"");
	CHECK_HAS(s, "\"states\":{\"ESTABLISHED\":5000,\"FIN_WAIT1\":0,\"FIN_WAIT2\":7}");
	CHECK_HAS(s, "\"timewait\":true");
	CHECK(s[strlen(s) - 1] == '\n' && s[strlen(s) - 2] == '}');
}

static void test_json_timewait_reused(void)
{
	struct ct_record r;
	char *s;

	sample_close(&r);
	r.kind = CT_REC_TIMEWAIT;
	r.tw_end = CT_TW_REUSED;
	r.tw_ns = 1500000000ULL;
	r.reuse_pid = 99;
	strcpy(r.reuse_comm, "client2");
	s = render(&r, true);
	CHECK_HAS(s, "\"event\":\"timewait\"");
	CHECK_HAS(s, "\"end\":\"reused\",\"duration_ns\":1500000000");
	CHECK_HAS(s, "\"reuse_pid\":99,\"reuse_comm\":\"client2\"");
	s = render(&r, false);
	CHECK_HAS(s, "timewait");
	CHECK_HAS(s, "reused TIME_WAIT=1.50s");
	CHECK_HAS(s, "by 99/client2");
}

static void test_table_close(void)
{
	struct ct_record r;
	char *s;

	sample_close(&r);
	s = render(&r, false);
	CHECK_HAS(s, "127.0.0.1:40000");
	CHECK_HAS(s, "127.0.0.2:8080");
	CHECK_HAS(s, "ESTABLISHED=5.0us FIN_WAIT1=0ns FIN_WAIT2=7ns -> TIME_WAIT");
	r.family = AF_INET6;
	memset(r.laddr, 0, 16);
	r.laddr[15] = 1;
	s = render(&r, false);
	CHECK_HAS(s, "[::1]:40000");
}

/* the formatting the hand-written code replaced: it must give the same text */
static void old_format_duration(uint64_t ns, char *buf, size_t len)
{
	static const struct {
		uint64_t limit, unit;
		int decimals;
		const char *suffix;
	} scale[] = {
		{ 1000, 1, 0, "ns" },
		{ 1000000, 100, 1, "us" },
		{ 1000000000, 10000, 2, "ms" },
		{ UINT64_MAX, 10000000, 2, "s" },
	};
	size_t i = 0;
	uint64_t v, div;

	while (ns >= scale[i].limit && i < sizeof(scale) / sizeof(scale[0]) - 1)
		i++;
	if (!scale[i].decimals) {
		snprintf(buf, len, "%llu%s", (unsigned long long)ns, scale[i].suffix);
		return;
	}
	v = (ns + scale[i].unit / 2) / scale[i].unit;
	div = scale[i].decimals == 1 ? 10 : 100;
	snprintf(buf, len, "%llu.%0*llu%s", (unsigned long long)(v / div), scale[i].decimals,
		 (unsigned long long)(v % div), scale[i].suffix);
}

static uint64_t test_rand_state = 0x9e3779b97f4a7c15ULL;

static uint64_t test_rand(void)
{
	test_rand_state ^= test_rand_state << 13;
	test_rand_state ^= test_rand_state >> 7;
	test_rand_state ^= test_rand_state << 17;
	return test_rand_state;
}

static void test_duration_edges(void)
{
	static const uint64_t edge[] = {
		0, 1, 9, 10, 99, 100, 999, 1000, 1049, 1050, 9949, 9950, 99949, 99950, 999949,
		999950, 999999, 1000000, 1004999, 1005000, 9994999, 9995000, 99995000, 999994999,
		999995000, 999999999, 1000000000, 1004999999, 1005000000, 99995000000ULL,
		4294967295ULL, 4294967296ULL, 99999999ULL, 100000000ULL, 9999999999999999ULL,
		10000000000000000ULL, 1ULL << 63, UINT64_MAX - 5000000, UINT64_MAX - 4999999,
		UINT64_MAX,
	};
	char a[64], b[64];

	for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++) {
		format_duration(edge[i], a, sizeof(a));
		old_format_duration(edge[i], b, sizeof(b));
		CHECK_STR(a, b);
		/* cut short like snprintf() */
		for (size_t len = 0; len < 8; len++) {
			memset(a, 'x', sizeof(a));
			memset(b, 'x', sizeof(b));
			format_duration(edge[i], a, len);
			old_format_duration(edge[i], b, len);
			CHECK(!memcmp(a, b, sizeof(a)));
		}
	}
	for (int i = 0; i < 200000; i++) {
		uint64_t ns = test_rand() >> (test_rand() % 64);

		format_duration(ns, a, sizeof(a));
		old_format_duration(ns, b, sizeof(b));
		CHECK_STR(a, b);
	}
}

/* IPv6 addresses of the shapes inet_ntop() treats apart: zero runs, v4-mapped, v4-compatible */
static void random_ipv6(uint8_t *a)
{
	uint16_t w[8];
	int shape = test_rand() % 6;

	for (int i = 0; i < 8; i++)
		w[i] = test_rand() % 3 ? 0 : test_rand() % 2 ? test_rand() : test_rand() % 16;
	if (shape == 0) {
		memset(w, 0, sizeof(w));
		w[7] = test_rand() % 3;
		w[6] = test_rand() % 2 ? test_rand() : 0;
	} else if (shape == 1) {
		memset(w, 0, sizeof(w));
		w[5] = test_rand() % 2 ? 0xffff : test_rand() % 2;
		w[6] = test_rand() % 2 ? test_rand() : 0;
		w[7] = test_rand();
	} else if (shape == 2) {
		for (int i = 0; i < 8; i++)
			w[i] = test_rand();
	}
	for (int i = 0; i < 8; i++) {
		a[2 * i] = w[i] >> 8;
		a[2 * i + 1] = w[i];
	}
}

static void test_addr_inet_ntop(void)
{
	uint8_t a[16] = {};
	char got[64], want[64];

	for (int i = 0; i < 200000; i++) {
		int family = i % 2 ? AF_INET6 : AF_INET;

		if (family == AF_INET)
			for (int k = 0; k < 4; k++)
				a[k] = test_rand() % 3 ? test_rand() : test_rand() % 2 ? 0 : 255;
		else
			random_ipv6(a);
		format_addr(family, a, got, sizeof(got));
		CHECK(inet_ntop(family, a, want, sizeof(want)));
		CHECK_STR(got, want);
	}
	memset(a, 0, sizeof(a));
	format_addr(AF_INET6, a, got, sizeof(got));
	CHECK_STR(got, "::");
	memset(a, 0xff, sizeof(a));
	format_addr(AF_INET6, a, got, sizeof(got));
	CHECK_STR(got, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	/* a family other than AF_INET is shown as IPv6, as before */
	format_addr(0, a, got, sizeof(got));
	CHECK_STR(got, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	/* too small a buffer: "?", as when inet_ntop() failed */
	format_addr(AF_INET6, a, got, 39);
	CHECK_STR(got, "?");
	format_addr(AF_INET6, a, got, 40);
	CHECK_STR(got, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
}

/* the table line as the snprintf() code wrote it, up to DETAILS */
static void old_table_prefix(const struct ct_record *r, char *buf, size_t len)
{
	char la[INET6_ADDRSTRLEN], ra[INET6_ADDRSTRLEN], le[64], re[64], pid[16];
	const char *fmt = r->family == AF_INET ? "%s:%u" : "[%s]:%u";

	inet_ntop(r->family == AF_INET ? AF_INET : AF_INET6, r->laddr, la, sizeof(la));
	inet_ntop(r->family == AF_INET ? AF_INET : AF_INET6, r->raddr, ra, sizeof(ra));
	snprintf(le, sizeof(le), fmt, la, r->lport);
	snprintf(re, sizeof(re), fmt, ra, r->rport);
	if (r->pid)
		snprintf(pid, sizeof(pid), "%-7u", r->pid);
	else
		snprintf(pid, sizeof(pid), "?      ");
	snprintf(buf, len, "%s %-15.16s %-8s %-26s %-26s %-12s %-12s", pid, r->pid ? r->comm : "?",
		 "close", le, re, initiator_name(r->initiator), method_name(r->method));
}

static void test_table_numbers(void)
{
	static const uint32_t pids[] = { 0, 1, 9, 10, 999999, 1000000, 9999999, 10000000,
					 99999999, 100000000, 4294967295u };
	static const uint16_t ports[] = { 0, 1, 9, 10, 99, 100, 9999, 10000, 65535 };
	char want[512], d[64];
	struct ct_record r;
	char *s;

	sample_close(&r);
	memcpy(r.comm, "sixteen-bytes-ok", CT_COMM_LEN); /* no NUL */
	for (size_t i = 0; i < sizeof(pids) / sizeof(pids[0]); i++) {
		for (size_t k = 0; k < sizeof(ports) / sizeof(ports[0]); k++) {
			r.pid = pids[i];
			r.lport = ports[k];
			r.rport = ports[sizeof(ports) / sizeof(ports[0]) - 1 - k];
			r.family = k % 2 ? AF_INET6 : AF_INET;
			if (r.family == AF_INET6)
				random_ipv6(r.laddr), random_ipv6(r.raddr);
			r.state_ns[TCP_ESTABLISHED] = test_rand() >> (test_rand() % 64);
			old_table_prefix(&r, want, sizeof(want));
			s = render(&r, false);
			CHECK(!strncmp(s, want, strlen(want)));
			old_format_duration(r.state_ns[TCP_ESTABLISHED], d, sizeof(d));
			snprintf(want, sizeof(want), " ESTABLISHED=%s FIN_WAIT1=0ns FIN_WAIT2=7ns -> TIME_WAIT\n", d);
			CHECK_STR(s + strlen(s) - strlen(want), want);
		}
	}
	r.kind = CT_REC_TIMEWAIT;
	r.tw_end = CT_TW_REUSED;
	r.tw_ns = 60270000000ULL;
	r.reuse_pid = 4294967295u;
	memcpy(r.reuse_comm, "a-sixteen-byte-c", CT_COMM_LEN); /* no NUL */
	s = render(&r, false);
	CHECK_HAS(s, " reused TIME_WAIT=60.27s by 4294967295/a-sixteen-byte-c\n");
	r.kind = CT_REC_CLOSE;
	r.flags = CT_F_EXITING;
	r.exit_signal = 255;
	s = render(&r, false);
	CHECK_HAS(s, " (process exiting, signal 255)");
}

static void test_json_numbers(void)
{
	struct ct_record r;
	char want[256];
	char *s;

	sample_close(&r);
	r.conn_id = UINT64_MAX;
	r.ts_ns = 123456789;
	r.pid = 4294967295u;
	r.netns = 0;
	r.lport = 0;
	r.rport = 65535;
	r.visited = 1 << TCP_ESTABLISHED | 1 << 12 | 1 << 15;
	r.state_ns[TCP_ESTABLISHED] = 10000000000000000ULL;
	r.state_ns[12] = 9999999999999999ULL;
	r.state_ns[15] = 100000000;
	s = render(&r, true);
	CHECK_HAS(s, "\"conn_id\":18446744073709551615,\"ts\":1700000000.123456,\"ts_ns\":123456789,");
	CHECK_HAS(s, "\"pid\":4294967295,");
	CHECK_HAS(s, "\"lport\":0,\"raddr\":\"127.0.0.2\",\"rport\":65535,\"netns\":0,");
	CHECK_HAS(s, "\"states\":{\"ESTABLISHED\":10000000000000000,\"?\":9999999999999999,\"?\":100000000}");
	for (int i = 0; i < 1000; i++) {
		uint64_t v = test_rand() >> (test_rand() % 64);

		r.ino = v ? v : 1;
		s = render(&r, true);
		snprintf(want, sizeof(want), ",\"inode\":%llu,", (unsigned long long)r.ino);
		CHECK_HAS(s, want);
	}
}

/* -T: the time of day, worked out once a second, as localtime_r() gives it */
static void test_table_time(void)
{
	struct ct_output o = { .timestamps = true, .mono_to_real_ns = 1700000000000000000LL };
	struct ct_record r;
	char *buf = NULL, want[32], *line;
	size_t len;
	uint64_t ts[] = { 0, 999999, 1000000, 999999999, 1000000000, 1000000001, 1500000000,
			  3600123000000ULL, 3600999000000ULL, 86399999000000ULL, 86400000000000ULL };

	sample_close(&r);
	strcpy(r.comm, "curl"); /* one line a record */
	o.out = open_memstream(&buf, &len);
	for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
		r.ts_ns = ts[i];
		output_record(&o, &r);
	}
	fclose(o.out);
	line = buf;
	for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
		int64_t real = (int64_t)ts[i] + o.mono_to_real_ns;
		time_t sec = real / 1000000000;
		struct tm tm;
		char t[16];

		localtime_r(&sec, &tm);
		strftime(t, sizeof(t), "%H:%M:%S", &tm);
		snprintf(want, sizeof(want), "%s.%03lld 77      ", t,
			 (long long)(real % 1000000000 / 1000000));
		CHECK(!strncmp(line, want, strlen(want)));
		line = strchr(line, '\n') + 1;
	}
	free(buf);
}

struct collected {
	struct ct_record r[4];
	int n;
};

static void collect(void *ctx, const struct ct_record *r)
{
	struct collected *c = ctx;

	if (c->n < 4)
		c->r[c->n++] = *r;
}

static void test_correlate_not_created(void)
{
	struct collected c = {};
	struct correlator corr = { .emit = collect, .ctx = &c };
	struct ct_record r;

	sample_close(&r);
	r.flags = CT_F_TW_NOT_CREATED;
	correlate_record(&corr, &r);
	CHECK(c.n == 2);
	CHECK(c.r[0].kind == CT_REC_CLOSE);
	CHECK(c.r[1].kind == CT_REC_TIMEWAIT && c.r[1].tw_end == CT_TW_NOT_CREATED);
	CHECK(c.r[1].conn_id == r.conn_id && c.r[1].tw_ns == 0);

	c.n = 0;
	r.flags = CT_F_TIMEWAIT;
	correlate_record(&corr, &r);
	CHECK(c.n == 1);
}

static void test_correlate_states(void)
{
	struct collected c = {};
	struct correlator corr = { .emit = collect, .ctx = &c, .states = true };
	struct ct_record r;

	sample_close(&r);
	r.kind = CT_REC_TIMEWAIT;
	r.tw_end = CT_TW_EXPIRED;
	correlate_record(&corr, &r);
	CHECK(c.n == 2);
	CHECK(c.r[1].kind == CT_REC_STATE && c.r[1].oldstate == TCP_TIME_WAIT &&
	      c.r[1].newstate == TCP_CLOSE);
	c.n = 0;
	corr.states = false;
	correlate_record(&corr, &r);
	CHECK(c.n == 1);
}

static void test_names(void)
{
	CHECK_STR(state_name(TCP_CLOSE_WAIT), "CLOSE_WAIT");
	CHECK_STR(state_name(99), "?");
	CHECK_STR(initiator_name(CT_INIT_SIMULTANEOUS), "simultaneous");
	CHECK_STR(tw_end_name(CT_TW_FIN_WAIT2_TIMEOUT), "fin-wait2-timeout");
	CHECK_STR(tw_end_name(CT_TW__MAX), "?");
	/* every method has a name (the summary prints them all) */
	for (int i = 0; i < CT_M__MAX; i++)
		CHECK(strcmp(method_name(i), "?") != 0);
	CHECK_STR(method_name(CT_M_LISTENER_CLOSED), "listener-closed");
	CHECK_STR(method_name(CT_M_ABORT_ON_DATA), "abort-on-data");
	CHECK_STR(method_name(CT_M__MAX), "?");
}

static void test_stats_json(void)
{
	struct ct_stats s = { .records = 10, .lost = 0 };
	struct ct_output o = { .json = true };
	char *buf = NULL;
	size_t len;

	o.out = open_memstream(&buf, &len);
	output_stats(&o, &s);
	fclose(o.out);
	CHECK_HAS(buf, "{\"event\":\"stats\",\"records\":10,\"lost\":0,");
	/* a recording made before start-up was counted has no start-up fields */
	CHECK(!strstr(buf, "startup_ms"));
	free(buf);

	/* a live run or a newer recording: its start-up and the sockets older than the tracer */
	s.startup_ms = 420;
	s.preexisting = 7;
	s.preexisting_untracked = 0;
	o.out = open_memstream(&buf, &len);
	output_stats(&o, &s);
	fclose(o.out);
	CHECK_HAS(buf, ",\"startup_ms\":420,\"preexisting\":7,\"preexisting_untracked\":0}\n");
	free(buf);
}


static void reuse_record(struct ct_record *r)
{
	sample_close(r);
	r->kind = CT_REC_TIMEWAIT;
	r->tw_end = CT_TW_REUSED;
	r->flags = CT_F_REUSE_DELAY;
	r->reuse_sysctl = 2;
	r->reuse_delay_ms = 1000;
	r->tw_sock_ns = 1500000000ULL;
}

static void test_tw_reuse_verdicts(void)
{
	struct ct_record r;
	char why[128];

	reuse_record(&r);
	CHECK(tw_is_loopback(&r));
	CHECK(tw_reuse_verdict(&r, why, sizeof(why)) == REUSE_OK);
	r.tw_sock_ns = 500000000ULL; /* younger than the delay */
	CHECK(tw_reuse_verdict(&r, why, sizeof(why)) == REUSE_VIOLATION);
	CHECK_HAS(why, "tcp_tw_reuse_delay");
	r.flags |= CT_F_REUSE_BOUND; /* bound port: the sysctl is not consulted */
	CHECK(tw_reuse_verdict(&r, why, sizeof(why)) == REUSE_OK);
	reuse_record(&r);
	r.reuse_sysctl = 0;
	CHECK(tw_reuse_verdict(&r, why, sizeof(why)) == REUSE_VIOLATION);
	reuse_record(&r);
	r.laddr[0] = 10, r.raddr[0] = 10; /* not loopback under =2 */
	CHECK(!tw_is_loopback(&r));
	CHECK(tw_reuse_verdict(&r, why, sizeof(why)) == REUSE_VIOLATION);
	r.bound_dev_if = 1; /* SO_BINDTODEVICE lo */
	CHECK(tw_reuse_verdict(&r, why, sizeof(why)) == REUSE_OK);
	r.bound_dev_if = 0;
	r.reuse_sysctl = 1;
	CHECK(tw_reuse_verdict(&r, why, sizeof(why)) == REUSE_OK);
	r.flags |= CT_F_END_FIN_WAIT2;
	CHECK(tw_reuse_verdict(&r, why, sizeof(why)) == REUSE_VIOLATION);
	/* v4-mapped loopback counts as loopback */
	reuse_record(&r);
	r.family = AF_INET6;
	inet_pton(AF_INET6, "::ffff:127.0.0.1", r.laddr);
	inet_pton(AF_INET6, "2001:db8::1", r.raddr);
	CHECK(tw_is_loopback(&r));
}

static void test_filter(void)
{
	struct ct_options o = {};
	struct ct_record r;

	sample_close(&r);
	CHECK(record_wanted(&o, &r));
	o.pid = 78;
	CHECK(!record_wanted(&o, &r));
	o.pid = 77;
	o.family = 6;
	CHECK(!record_wanted(&o, &r));
	o.family = 4;
	CHECK(record_wanted(&o, &r));
	r.family = AF_INET6;
	inet_pton(AF_INET6, "::ffff:127.0.0.1", r.laddr);
	CHECK(record_wanted(&o, &r)); /* v4-mapped is IPv4 */
	o.n_lports = 1;
	o.lports[0] = 80;
	CHECK(!record_wanted(&o, &r));
	o.lports[0] = 40000;
	CHECK(record_wanted(&o, &r));
	o.netns = 1;
	CHECK(!record_wanted(&o, &r));
}

static void test_summary_account(void)
{
	struct summary_view *v = summary_new();
	const struct ct_summary *s;
	struct ct_record r;

	CHECK(v);
	sample_close(&r);
	summary_add(v, &r);
	r.initiator = CT_INIT_REMOTE;
	r.flags = CT_F_RST_RECEIVED | CT_F_TW_NOT_CREATED;
	summary_add(v, &r);
	reuse_record(&r);
	summary_add(v, &r);
	s = summary_totals(v);
	CHECK(s->closes == 2 && s->by_initiator[CT_INIT_LOCAL] == 1 && s->by_initiator[CT_INIT_REMOTE] == 1);
	CHECK(s->tw_created == 1 && s->tw_not_created == 1 && s->rst_received == 1);
	CHECK(s->tw_end[CT_TW_REUSED] == 1);
	/* 1.5 s: slot floor(log2(1.5e9)) = 30 */
	CHECK(s->reuse_age_hist[30] == 1);
	/* ESTABLISHED 5000 ns -> slot 12, FIN_WAIT1 0 ns -> slot 0, FIN_WAIT2 7 ns -> slot 2 */
	CHECK(s->state_hist[TCP_ESTABLISHED][12] == 2 && s->state_hist[TCP_FIN_WAIT1][0] == 2);
	CHECK(s->state_hist[TCP_FIN_WAIT2][2] == 2);
	summary_free(v);
}

static void test_trace_roundtrip(void)
{
	char dir[] = "/tmp/ct-unit-XXXXXX", path[64], err[128];
	struct ct_file_header h;
	struct recorder_opts ro = { .mode = 0600, .header = &h };
	struct recorder *rec;
	struct trace_reader *rd;
	struct ct_record r, back;
	struct ct_stats st = { .records = 3000, .lost = 1 };
	char *argv[] = { "closetrace", "-w", "x" };
	int n = 0;

	CHECK(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/t.ct", dir);
	ro.path = path;
	trace_header_init(&h, 123456789, 3, argv);
	CHECK_STR(h.options, "closetrace -w x");
	CHECK(recorder__open(&ro, &rec) == 0);
	sample_close(&r);
	for (int i = 0; i < 3000; i++) { /* three blocks */
		r.conn_id = i;
		CHECK(recorder__add(rec, &r) == 0);
	}
	CHECK(recorder__write_stats(rec, &st) == 0);
	CHECK(recorder__close(rec) == 0);

	rd = trace_reader__open(path, err, sizeof(err));
	CHECK(rd);
	CHECK(trace_reader__header(rd)->mono_to_real_ns == 123456789);
	for (;;) {
		enum reader_status s = trace_reader__next(rd, &back);

		if (s == READ_OK) {
			CHECK(back.conn_id == (uint64_t)n && back.lport == 40000);
			n++;
			continue;
		}
		CHECK(s == READ_STATS || s == READ_EOF);
		if (s == READ_EOF)
			break;
		CHECK(trace_reader__stats(rd)->records == 3000 && trace_reader__stats(rd)->lost == 1);
	}
	CHECK(n == 3000);
	trace_reader__close(rd);
	unlink(path);
	rmdir(dir);
}

/* records written and read back must be the same, whatever their shape */
static bool roundtrip(const struct ct_record *recs, int n, long *file_size)
{
	char dir[] = "/tmp/ct-unit-XXXXXX", path[64], err[128];
	char *argv[] = { "closetrace" };
	struct ct_file_header h;
	struct recorder_opts ro = { .mode = 0600, .header = &h };
	struct ct_stats st = { .records = n };
	struct recorder *rec;
	struct trace_reader *rd;
	struct ct_record back;
	bool ok = true;
	int i = 0;
	FILE *f;

	if (!mkdtemp(dir))
		return false;
	snprintf(path, sizeof(path), "%s/t.ct", dir);
	ro.path = path;
	trace_header_init(&h, 0, 1, argv);
	if (recorder__open(&ro, &rec))
		return false;
	for (int k = 0; k < n; k++)
		ok = ok && recorder__add(rec, &recs[k]) == 0;
	ok = ok && recorder__write_stats(rec, &st) == 0;
	ok = recorder__close(rec) == 0 && ok;
	rd = trace_reader__open(path, err, sizeof(err));
	ok = ok && rd;
	while (ok) {
		enum reader_status s = trace_reader__next(rd, &back);

		if (s == READ_STATS)
			break;
		ok = s == READ_OK && i < n && !memcmp(&back, &recs[i], sizeof(back));
		i++;
	}
	ok = ok && i == n && trace_reader__next(rd, &back) == READ_EOF;
	trace_reader__close(rd);
	f = fopen(path, "rb");
	if (f && file_size) {
		fseek(f, 0, SEEK_END);
		*file_size = ftell(f);
	}
	if (f)
		fclose(f);
	unlink(path);
	rmdir(dir);
	return ok;
}

static void random_words(struct ct_record *r, uint64_t keep)
{
	uint64_t w[sizeof(*r) / 8];

	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
		w[i] = keep & (1ULL << i) ? test_rand() : 0;
	memcpy(r, w, sizeof(w));
}

static void test_trace_encoder(void)
{
	enum { N = 5000 };
	static struct ct_record recs[N];
	const int words = sizeof(struct ct_record) / 8;
	long size, packed;

	/* a connection's close and timewait, over and over: compresses well */
	for (int i = 0; i < N; i++) {
		sample_close(&recs[i]);
		recs[i].conn_id = 4096 + i / 2;
		recs[i].ts_ns += i * 48611ULL + test_rand() % 5000;
		recs[i].lport = 1024 + i / 2 % 60000;
		recs[i].raddr[3] = 1 + i / 2 % 64;
		recs[i].state_ns[TCP_ESTABLISHED] = 20000 + test_rand() % 90000;
		recs[i].ino = 130340872 + i / 2;
		if (i % 2) {
			recs[i].kind = CT_REC_TIMEWAIT;
			recs[i].tw_end = CT_TW_REUSED;
			recs[i].tw_ns = 1000000000 + test_rand() % 1000000;
			recs[i].reuse_pid = 77;
		}
	}
	CHECK(roundtrip(recs, N, &size));
	CHECK(size < N * (long)sizeof(struct ct_record) / 8);
	/* identical records (runs longer than a match), and all-zero ones */
	for (int i = 0; i < N; i++)
		sample_close(&recs[i]);
	CHECK(roundtrip(recs, N, NULL));
	memset(recs, 0, sizeof(recs));
	CHECK(roundtrip(recs, N, NULL));
	/* a few masks, records that differ from the last of theirs here and there */
	for (int i = 0; i < N; i++) {
		static const uint64_t masks[] = { 0x1, 0xff00ff, 0x7fffffffffULL, 0x5555555555ULL,
						  0x3, 0x8000000001ULL };
		uint64_t m = masks[test_rand() % 6] & ((1ULL << words) - 1);

		if (i < 6 || test_rand() % 4 == 0) {
			random_words(&recs[i], m);
			continue;
		}
		recs[i] = recs[i - 1 - test_rand() % 6];
		for (int k = test_rand() % 12; k > 0; k--)
			((uint8_t *)&recs[i])[test_rand() % sizeof(recs[i])] = test_rand();
	}
	CHECK(roundtrip(recs, N, NULL));
	/* full records, bytes of very skewed counts: the Huffman codes must be cut to 15 bits */
	for (int i = 0; i < N; i++) {
		uint8_t *b = (uint8_t *)&recs[i];

		random_words(&recs[i], ((1ULL << words) - 1) & ~(1ULL << i % words));
		for (size_t k = 0; k < sizeof(recs[i]); k++) {
			uint64_t x = test_rand();
			int sym = 1;

			while (sym < 24 && x & 1)
				sym++, x >>= 1;
			b[k] = b[k] ? sym : 0;
		}
	}
	CHECK(roundtrip(recs, N, NULL));
	/*
	 * incompressible records: stored, no bigger than they were packed
	 * (a mask and the non-zero words) but for block and stored-block
	 * headers and the file header
	 */
	packed = 0;
	for (int i = 0; i < N; i++) {
		const uint64_t *w = (const uint64_t *)&recs[i];

		random_words(&recs[i], test_rand());
		packed += 8;
		for (int k = 0; k < words; k++)
			packed += w[k] ? 8 : 0;
	}
	CHECK(roundtrip(recs, N, &size));
	CHECK(size <= packed + packed / 1000 + 4096);
}

static void test_size_parse(void)
{
	CHECK(parse_size("4096") == 4096);
	CHECK(parse_size("4K") == 4096 && parse_size("100M") == 100LL << 20 && parse_size("2g") == 2LL << 30);
	CHECK(parse_size("") == -1 && parse_size("-1") == -1 && parse_size("5X") == -1 &&
	      parse_size("0") == -1);
}

int main(void)
{
	run("port_list", test_port_list);
	run("options_valid", test_options_valid);
	run("options_invalid", test_options_invalid);
	run("duration_format", test_duration_format);
	run("addr_format", test_addr_format);
	run("json_close", test_json_close);
	run("json_timewait_reused", test_json_timewait_reused);
	run("table_close", test_table_close);
	run("duration_edges", test_duration_edges);
	run("addr_inet_ntop", test_addr_inet_ntop);
	run("table_numbers", test_table_numbers);
	run("json_numbers", test_json_numbers);
	run("table_time", test_table_time);
	run("correlate_not_created", test_correlate_not_created);
	run("correlate_states", test_correlate_states);
	run("names", test_names);
	run("stats_json", test_stats_json);
	run("tw_reuse_verdicts", test_tw_reuse_verdicts);
	run("filter", test_filter);
	run("summary_account", test_summary_account);
	run("trace_roundtrip", test_trace_roundtrip);
	run("trace_encoder", test_trace_encoder);
	run("size_parse", test_size_parse);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
