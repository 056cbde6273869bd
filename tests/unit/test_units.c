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
	run("correlate_not_created", test_correlate_not_created);
	run("correlate_states", test_correlate_states);
	run("names", test_names);
	run("stats_json", test_stats_json);
	run("tw_reuse_verdicts", test_tw_reuse_verdicts);
	run("filter", test_filter);
	run("summary_account", test_summary_account);
	run("trace_roundtrip", test_trace_roundtrip);
	run("size_parse", test_size_parse);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
