// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Rendering records: the live table and JSON lines. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "output.h"

/* the kernel's TCP state numbers (netinet/tcp.h: TCP_ESTABLISHED = 1 ...) and names */
#define TCP_STATE_NAMES(X)                                                                 \
	X(TCP_ESTABLISHED, "ESTABLISHED") X(TCP_SYN_SENT, "SYN_SENT") X(TCP_SYN_RECV, "SYN_RECV") \
	X(TCP_FIN_WAIT1, "FIN_WAIT1") X(TCP_FIN_WAIT2, "FIN_WAIT2") X(TCP_TIME_WAIT, "TIME_WAIT") \
	X(TCP_CLOSE, "CLOSE") X(TCP_CLOSE_WAIT, "CLOSE_WAIT") X(TCP_LAST_ACK, "LAST_ACK")         \
	X(TCP_LISTEN, "LISTEN") X(TCP_CLOSING, "CLOSING")

#define STATE_NAME(num, name) [num] = name,
static const char *const state_names[CT_NSTATES] = { TCP_STATE_NAMES(STATE_NAME) };

static const char *const initiator_names[CT_INIT__MAX] = {
	[CT_INIT_UNKNOWN] = "unknown",
	[CT_INIT_LOCAL] = "local",
	[CT_INIT_REMOTE] = "remote",
	[CT_INIT_SIMULTANEOUS] = "simultaneous",
	[CT_INIT_LOCAL_RESET] = "local-reset",
	[CT_INIT_REMOTE_RESET] = "remote-reset",
	[CT_INIT_TIMEOUT] = "timeout",
	[CT_INIT_NONE] = "none",
};

static const char *const tw_end_names[CT_TW__MAX] = {
	[CT_TW_NONE] = "none",
	[CT_TW_EXPIRED] = "expired",
	[CT_TW_REUSED] = "reused",
	[CT_TW_RESET] = "reset",
	[CT_TW_SYN] = "syn",
	[CT_TW_FIN_WAIT2_TIMEOUT] = "fin-wait2-timeout",
	[CT_TW_NOT_CREATED] = "not-created",
	[CT_TW_NETNS_EXIT] = "netns-exit",
};

static const char *const method_names[CT_M__MAX] = {
	[CT_M_NONE] = "none",
	[CT_M_CLOSE] = "close",
	[CT_M_SHUTDOWN] = "shutdown",
	[CT_M_EXIT] = "exit",
	[CT_M_LINGER_RESET] = "linger-reset",
	[CT_M_UNREAD_RESET] = "unread-data-reset",
	[CT_M_LINGER_WAIT] = "linger-wait",
	[CT_M_FIN] = "fin",
	[CT_M_RST] = "rst",
	[CT_M_LISTENER_CLOSED] = "listener-closed",
	[CT_M_ABORT_ON_DATA] = "abort-on-data",
};

/* the closing states, in the order a table line shows them */
static const int closing_states[] = {
	TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_CLOSE_WAIT,
	TCP_LAST_ACK,	 TCP_CLOSING,	TCP_TIME_WAIT,
};

#define NAME(tab, i) ((i) >= 0 && (size_t)(i) < sizeof(tab) / sizeof(tab[0]) && tab[i] ? tab[i] : "?")

const char *state_name(int state)
{
	return NAME(state_names, state);
}

const char *initiator_name(int initiator)
{
	return NAME(initiator_names, initiator);
}

const char *tw_end_name(int end)
{
	return NAME(tw_end_names, end);
}

const char *method_name(int method)
{
	return NAME(method_names, method);
}

static const char *linger_name(int linger)
{
	return linger == CT_LINGER_ACKED ? "acked" : linger == CT_LINGER_TIMEOUT ? "timeout" : "none";
}

/*
 * Hand-written number and address formatting: snprintf() and inet_ntop()
 * (which prints with sprintf) were most of the loader's CPU at full
 * connection churn.  Each writes at p and returns the end; the unit tests
 * hold them to the text the libc functions gave.
 */
static const char digit_pairs[201] =
	"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
	"8081828384858687888990919293949596979899";

/* digits of v < 10^8 */
static inline int decimal_digits32(uint32_t v)
{
	return 1 + (v >= 10) + (v >= 100) + (v >= 1000) + (v >= 10000) + (v >= 100000) +
	       (v >= 1000000) + (v >= 10000000);
}

/* "%u" of v < 10^8, in 32-bit arithmetic (cheaper than 64-bit) */
static char *fmt_u32(char *p, uint32_t v)
{
	char *end = p + decimal_digits32(v), *q = end;

	while (v >= 100) {
		q -= 2;
		memcpy(q, digit_pairs + 2 * (v % 100), 2);
		v /= 100;
	}
	if (v >= 10)
		memcpy(q - 2, digit_pairs + 2 * v, 2);
	else
		q[-1] = '0' + v;
	return end;
}

/* exactly 8 digits, zero-padded, of v < 10^8 */
static char *fmt_8digits(char *p, uint32_t v)
{
	for (int i = 6; i >= 0; i -= 2, v /= 100)
		memcpy(p + i, digit_pairs + 2 * (v % 100), 2);
	return p + 8;
}

/* "%llu": in pieces of 8 digits */
static char *fmt_u64(char *p, uint64_t v)
{
	if (v < 100000000)
		return fmt_u32(p, v);
	if (v < 10000000000000000ULL) {
		p = fmt_u32(p, v / 100000000);
		return fmt_8digits(p, v % 100000000);
	}
	p = fmt_u32(p, v / 10000000000000000ULL);
	p = fmt_8digits(p, v / 100000000 % 100000000);
	return fmt_8digits(p, v % 100000000);
}

/* "%0*llu": v in width digits, zero-padded (v < 10^width) */
static char *fmt_u64_zero(char *p, uint64_t v, int width)
{
	for (int i = width - 1; i >= 0; i--, v /= 10)
		p[i] = '0' + v % 10;
	return p + width;
}

/* "%x" of a 16-bit word */
static char *fmt_hex16(char *p, unsigned int v)
{
	static const char hex[] = "0123456789abcdef";
	int shift = v >= 0x1000 ? 12 : v >= 0x100 ? 8 : v >= 0x10 ? 4 : 0;

	for (; shift >= 0; shift -= 4)
		*p++ = hex[(v >> shift) & 15];
	return p;
}

static char *fmt_ipv4(char *p, const uint8_t *a)
{
	for (int i = 0; i < 4; i++) {
		if (i)
			*p++ = '.';
		p = fmt_u64(p, a[i]);
	}
	return p;
}

/*
 * inet_ntop(AF_INET6) as glibc writes it: the longest run of two or more
 * zero words (the first of equal ones) becomes "::", and ::a.b.c.d and
 * ::ffff:a.b.c.d end in dotted IPv4.
 */
static char *fmt_ipv6(char *p, const uint8_t *a)
{
	int best = -1, best_len = 0, cur = -1, cur_len = 0;
	unsigned int w[8];

	for (int i = 0; i < 8; i++) {
		w[i] = a[2 * i] << 8 | a[2 * i + 1];
		if (w[i]) {
			cur = -1;
			continue;
		}
		if (cur < 0)
			cur = i, cur_len = 0;
		if (++cur_len > best_len)
			best = cur, best_len = cur_len;
	}
	if (best_len < 2)
		best = -1;
	for (int i = 0; i < 8; i++) {
		if (best >= 0 && i >= best && i < best + best_len) {
			if (i == best)
				*p++ = ':';
			continue;
		}
		if (i)
			*p++ = ':';
		if (i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff)))
			return fmt_ipv4(p, a + 12);
		p = fmt_hex16(p, w[i]);
	}
	if (best >= 0 && best + best_len == 8)
		*p++ = ':';
	return p;
}

/* any family but AF_INET is shown as IPv6, as inet_ntop() was asked to */
static char *fmt_addr(char *p, uint16_t family, const uint8_t *addr)
{
	return family == AF_INET ? fmt_ipv4(p, addr) : fmt_ipv6(p, addr);
}

void format_addr(uint16_t family, const uint8_t *addr, char *buf, size_t len)
{
	char t[INET6_ADDRSTRLEN];
	size_t n = fmt_addr(t, family, addr) - t;

	if (n >= len) {
		snprintf(buf, len, "?");
		return;
	}
	memcpy(buf, t, n);
	buf[n] = '\0';
}

/* fixed point, rounded half up: no floating point on the hot path */
static char *fmt_duration(char *p, uint64_t ns)
{
	static const struct {
		uint64_t limit, unit, div;
		int decimals;
		char suffix[3];
	} scale[] = {
		{ 1000, 1, 1, 0, "ns" },
		{ 1000000, 100, 10, 1, "us" },
		{ 1000000000, 10000, 100, 2, "ms" },
		{ UINT64_MAX, 10000000, 100, 2, "s" },
	};
	size_t i = 0;
	uint64_t v;

	while (ns >= scale[i].limit && i < sizeof(scale) / sizeof(scale[0]) - 1)
		i++;
	if (!scale[i].decimals) {
		p = fmt_u64(p, ns);
	} else {
		/* in 10^-decimals of the unit (wraps near UINT64_MAX, as it always did) */
		v = (ns + scale[i].unit / 2) / scale[i].unit;
		p = fmt_u64(p, v / scale[i].div);
		*p++ = '.';
		p = fmt_u64_zero(p, v % scale[i].div, scale[i].decimals);
	}
	*p++ = scale[i].suffix[0];
	if (scale[i].suffix[1])
		*p++ = scale[i].suffix[1];
	return p;
}

void format_duration(uint64_t ns, char *buf, size_t len)
{
	char t[32];
	size_t n = fmt_duration(t, ns) - t;

	if (!len)
		return;
	if (n >= len)
		n = len - 1; /* cut short, as snprintf() would */
	memcpy(buf, t, n);
	buf[n] = '\0';
}

static const char *family_name(uint16_t family)
{
	return family == AF_INET ? "ipv4" : "ipv6";
}

static const char *event_name(int kind)
{
	switch (kind) {
	case CT_REC_CLOSE:
		return "close";
	case CT_REC_TIMEWAIT:
		return "timewait";
	case CT_REC_STATE:
		return "state";
	case CT_REC_CONNECT_FAIL:
		return "connect-fail";
	case CT_REC_CLOSE_DEFERRED:
		return "close-deferred";
	case CT_REC_BIND_CONFLICT:
		return "bind-conflict";
	case CT_REC_HOLDER:
		return "holder";
	case CT_REC_PORT_USER:
		return "port-user";
	case CT_REC_WATCH:
		return "watch";
	case CT_REC_WATCH_COUNT:
		return "watch-count";
	}
	return "?";
}

static const char *syscall_name(int sys)
{
	return sys == CT_SYS_BIND ? "bind" : sys == CT_SYS_LISTEN ? "listen" :
	       sys == CT_SYS_CONNECT ? "connect" : "?";
}

/*
 * A byte of a string as it goes into JSON: comm may hold any byte, JSON
 * strings must not.  Returns the length written to e.
 */
static size_t json_escape(unsigned char c, char e[6])
{
	static const char hex[] = "0123456789abcdef";

	if (c == '"' || c == '\\') {
		e[0] = '\\';
		e[1] = c;
		return 2;
	}
	if (c < 0x20 || c >= 0x7f) {
		memcpy(e, "\\u00", 4);
		e[4] = hex[c >> 4];
		e[5] = hex[c & 15];
		return 6;
	}
	e[0] = c;
	return 1;
}

void json_string(FILE *f, const char *s, size_t max)
{
	char e[6];

	fputc('"', f);
	for (size_t i = 0; i < max && s[i]; i++)
		fwrite(e, 1, json_escape(s[i], e), f);
	fputc('"', f);
}

/*
 * A line is built in memory with these and written at once: at full
 * connection churn, fprintf() was most of the loader's CPU.  No line comes
 * near the buffer's size; the bounds checks only keep a wrong one from
 * overflowing it, and stay out of the way of the inlined constant copies.
 */
#define LINE_MAX_NUMBER 24 /* room for any fmt_* of a number or duration */

struct line {
	size_t n;
	char b[4096];
};

static void put_mem_cut(struct line *l, const char *s, size_t n)
{
	n = n < sizeof(l->b) - l->n ? n : sizeof(l->b) - l->n;
	memcpy(l->b + l->n, s, n);
	l->n += n;
}

static inline void put_mem(struct line *l, const char *s, size_t n)
{
	if (__builtin_expect(n > sizeof(l->b) - l->n, 0)) {
		put_mem_cut(l, s, n);
		return;
	}
	memcpy(l->b + l->n, s, n);
	l->n += n;
}

/* s must be a string literal (its size is taken): "" s "" refuses anything else */
#define put_lit(l, s) put_mem(l, "" s "", sizeof(s) - 1)

static inline void put_str(struct line *l, const char *s)
{
	put_mem(l, s, strlen(s));
}

/* room for a formatted number or address at the end, or false (it is left out) */
static inline bool put_room(struct line *l, size_t n)
{
	return sizeof(l->b) - l->n >= n;
}

/* at most max bytes of s, padded with spaces to width */
static void put_pad(struct line *l, const char *s, size_t max, size_t width)
{
	size_t n = strnlen(s, max);

	put_mem(l, s, n);
	if (n < width && put_room(l, width - n)) {
		memset(l->b + l->n, ' ', width - n);
		l->n += width - n;
	}
}

/* spaces from column start (an offset in l) up to width */
static void put_pad_from(struct line *l, size_t start, size_t width)
{
	size_t used = l->n - start;

	if (used < width && put_room(l, width - used)) {
		memset(l->b + l->n, ' ', width - used);
		l->n += width - used;
	}
}

static void put_fmt(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put_fmt(struct line *l, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (l->n >= sizeof(l->b))
		return;
	va_start(ap, fmt);
	n = vsnprintf(l->b + l->n, sizeof(l->b) - l->n, fmt, ap);
	va_end(ap);
	if (n > 0)
		l->n += (size_t)n < sizeof(l->b) - l->n ? (size_t)n : sizeof(l->b) - l->n - 1;
}

static inline void put_u64(struct line *l, unsigned long long v)
{
	if (put_room(l, LINE_MAX_NUMBER))
		l->n = fmt_u64(l->b + l->n, v) - l->b;
}

static void put_i64(struct line *l, long long v)
{
	if (v < 0) {
		put_lit(l, "-");
		put_u64(l, -(unsigned long long)v);
	} else {
		put_u64(l, v);
	}
}

static void put_duration(struct line *l, uint64_t ns)
{
	if (put_room(l, LINE_MAX_NUMBER))
		l->n = fmt_duration(l->b + l->n, ns) - l->b;
}

static void put_addr(struct line *l, uint16_t family, const uint8_t *addr)
{
	if (put_room(l, INET6_ADDRSTRLEN))
		l->n = fmt_addr(l->b + l->n, family, addr) - l->b;
}

static void put_bool(struct line *l, bool b)
{
	if (b)
		put_lit(l, "true");
	else
		put_lit(l, "false");
}

/*
 * ,"key":"value", ,"key":number and ,"key":bool.  key must be a string
 * literal: ,"key": is put together by the compiler and copied inline.
 */
#define KEY(key) ",\"" key "\":"
#define put_key(l, key) put_lit(l, KEY(key))

static inline void put_kstr_(struct line *l, const char *key, size_t key_len, const char *v)
{
	put_mem(l, key, key_len);
	put_str(l, v);
	put_lit(l, "\"");
}

#define put_kstr(l, key, v) put_kstr_(l, KEY(key) "\"", sizeof(KEY(key) "\"") - 1, v)

#define put_knum(l, key, v) (put_key(l, key), put_u64(l, v))

#define put_kbool(l, key, v) (put_key(l, key), put_bool(l, v))

static void put_jstring(struct line *l, const char *s, size_t max)
{
	char e[6];

	put_lit(l, "\"");
	for (size_t i = 0; i < max && s[i]; i++)
		put_mem(l, e, json_escape(s[i], e));
	put_lit(l, "\"");
}

/* "NAME": in the states object, by state (the unnamed ones: "?") */
#define STATE_KEY(num, name) [num] = { "\"" name "\":", sizeof("\"" name "\":") - 1 },

static const struct {
	const char *s;
	size_t n;
} json_state_keys[CT_NSTATES] = { TCP_STATE_NAMES(STATE_KEY) };

static void json_states(struct line *l, const struct ct_record *r)
{
	bool first = true;

	put_lit(l, ",\"states\":{");
	for (int s = 1; s < CT_NSTATES; s++) {
		if (!(r->visited & (1u << s)) || s == TCP_CLOSE || s == TCP_LISTEN)
			continue;
		if (!first)
			put_lit(l, ",");
		if (json_state_keys[s].n)
			put_mem(l, json_state_keys[s].s, json_state_keys[s].n);
		else
			put_lit(l, "\"?\":");
		put_u64(l, r->state_ns[s]);
		first = false;
	}
	put_lit(l, "}");
}

static void json_method(struct line *l, const struct ct_record *r)
{
	put_kstr(l, "method", method_name(r->method));
	if (r->method == CT_M_FIN || r->method == CT_M_RST || r->app_method) {
		put_kstr(l, "app_method", method_name(r->app_method));
		if (r->visited & (1u << TCP_CLOSE_WAIT))
			put_knum(l, "app_close_ns", r->state_ns[TCP_CLOSE_WAIT]);
	}
	if (r->flags & CT_F_EXITING) {
		put_kbool(l, "exiting", true);
		put_knum(l, "exit_signal", r->exit_signal);
	}
	if (r->method == CT_M_LINGER_WAIT || r->app_method == CT_M_LINGER_WAIT) {
		put_kstr(l, "linger", linger_name(r->linger));
		put_knum(l, "linger_ns", r->linger_ns);
	}
	if (r->ino)
		put_knum(l, "inode", r->ino);
}

static void json_kind_fields(struct line *l, const struct ct_record *r)
{
	switch (r->kind) {
	case CT_REC_CLOSE:
		json_states(l, r);
		json_method(l, r);
		put_kbool(l, "timewait", r->flags & CT_F_TIMEWAIT);
		if (r->flags & CT_F_TIMEWAIT) {
			put_kstr(l, "timewait_substate",
				 r->flags & CT_F_TW_FIN_WAIT2 ? "FIN_WAIT2" : "TIME_WAIT");
			/* false: tws was full, no timewait record will follow */
			put_kbool(l, "timewait_tracked", !(r->flags & CT_F_TW_UNTRACKED));
		}
		put_kbool(l, "rst_sent", r->flags & CT_F_RST_SENT);
		put_kbool(l, "rst_received", r->flags & CT_F_RST_RECEIVED);
		put_kbool(l, "preexisting", r->flags & CT_F_PREEXISTING);
		put_kbool(l, "accepted", r->flags & CT_F_PASSIVE);
		break;
	case CT_REC_TIMEWAIT:
		json_states(l, r);
		put_kstr(l, "end", tw_end_name(r->tw_end));
		put_knum(l, "duration_ns", r->tw_ns);
		put_knum(l, "tw_sock_ns", r->tw_sock_ns);
		if (r->flags & CT_F_TW_FIN_WAIT2)
			put_kbool(l, "split_estimated", r->flags & CT_F_TW_SPLIT_ESTIMATED);
		put_kbool(l, "preexisting", r->flags & CT_F_PREEXISTING);
		if (r->flags & CT_F_PREEXISTING)
			put_kbool(l, "age_estimate", r->flags & CT_F_AGE_ESTIMATE);
		if (r->tw_end == CT_TW_REUSED) {
			put_knum(l, "reuse_pid", r->reuse_pid);
			put_lit(l, ",\"reuse_comm\":");
			put_jstring(l, r->reuse_comm, CT_COMM_LEN);
		}
		break;
	case CT_REC_STATE:
		put_kstr(l, "oldstate", state_name(r->oldstate));
		put_kstr(l, "newstate", state_name(r->newstate));
		break;
	case CT_REC_CLOSE_DEFERRED:
		put_knum(l, "fd", r->fd);
		put_knum(l, "refs_left", r->refs);
		put_kstr(l, "state", state_name(r->state));
		put_knum(l, "inode", r->ino);
		break;
	case CT_REC_BIND_CONFLICT:
		put_kstr(l, "syscall", syscall_name(r->syscall));
		put_kstr(l, "error", "EADDRINUSE");
		put_knum(l, "fd", r->fd);
		put_kstr(l, "state", state_name(r->state));
		break;
	case CT_REC_HOLDER:
		put_lit(l, ",\"fd\":");
		put_i64(l, r->pid ? (long long)r->fd : -1);
		put_knum(l, "inode", r->ino);
		put_kstr(l, "state", state_name(r->state));
		put_kbool(l, "incomplete", r->flags & CT_F_INCOMPLETE);
		break;
	case CT_REC_PORT_USER:
		put_kstr(l, "state", state_name(r->state));
		put_knum(l, "inode", r->ino);
		if (r->state == TCP_TIME_WAIT) {
			put_knum(l, "count", r->refs);
			put_knum(l, "oldest_age_ns", r->age_ns);
			put_knum(l, "last_expires_ns", r->expires_ns);
		} else {
			put_lit(l, ",\"owner_fd\":");
			put_i64(l, r->pid ? (long long)r->fd : -1);
		}
		put_kbool(l, "incomplete", r->flags & CT_F_INCOMPLETE);
		break;
	case CT_REC_WATCH:
		put_kstr(l, "state", state_name(r->state));
		put_knum(l, "age_ns", r->age_ns);
		put_kbool(l, "age_at_least", r->flags & CT_F_AGE_AT_LEAST);
		put_kbool(l, "closed", r->flags & CT_F_WATCH_CLOSED);
		break;
	case CT_REC_WATCH_COUNT:
		put_kstr(l, "state", state_name(r->state));
		put_knum(l, "count", r->refs);
		put_knum(l, "oldest_age_ns", r->age_ns);
		break;
	}
}

static void output_json(const struct ct_output *o, const struct ct_record *r)
{
	char frac[7];
	int64_t real = (int64_t)r->ts_ns + o->mono_to_real_ns;
	long long us = real % 1000000000 / 1000;
	struct line l;

	l.n = 0;
	put_lit(&l, "{\"event\":\"");
	put_str(&l, event_name(r->kind));
	put_lit(&l, "\"");
	put_knum(&l, "conn_id", r->conn_id);
	put_lit(&l, ",\"ts\":");
	put_i64(&l, real / 1000000000);
	for (int i = 5; i >= 0; i--, us /= 10)
		frac[i] = '0' + (us < 0 ? 0 : us % 10);
	put_lit(&l, ".");
	put_mem(&l, frac, 6);
	put_knum(&l, "ts_ns", r->ts_ns);
	put_knum(&l, "pid", r->pid);
	put_lit(&l, ",\"comm\":");
	put_jstring(&l, r->comm, CT_COMM_LEN);
	put_kstr(&l, "family", family_name(r->family));
	put_lit(&l, ",\"laddr\":\"");
	put_addr(&l, r->family, r->laddr);
	put_lit(&l, "\",\"lport\":");
	put_u64(&l, r->lport);
	put_lit(&l, ",\"raddr\":\"");
	put_addr(&l, r->family, r->raddr);
	put_lit(&l, "\"");
	put_knum(&l, "rport", r->rport);
	put_knum(&l, "netns", r->netns);
	put_kstr(&l, "initiator", initiator_name(r->initiator));
	json_kind_fields(&l, r);
	put_lit(&l, "}\n");
	fwrite(l.b, 1, l.n, o->out);
}

/*
 * A file or pipe gets a large buffer: one write() per 256 KiB rather than
 * per 4 KiB, and (on a file) fewer partly written pages the kernel must
 * zero.  The loader flushes after every ring buffer poll, so lines are no
 * later than before; a terminal keeps its line buffering.
 */
void output_buffer(FILE *f)
{
	static char buf[256 << 10];

	if (!isatty(fileno(f)))
		setvbuf(f, buf, _IOFBF, sizeof(buf));
}

void output_header(const struct ct_output *o)
{
	if (o->json)
		return;
	if (o->timestamps)
		fprintf(o->out, "%-12s ", "TIME");
	fprintf(o->out, "%-7s %-15s %-8s %-26s %-26s %-12s %-12s %s\n", "PID", "COMM", "EVENT",
		"LOCAL", "REMOTE", "INITIATOR", "METHOD", "DETAILS");
}

static void table_details(struct line *l, const struct ct_record *r)
{
	switch (r->kind) {
	case CT_REC_CLOSE:
		for (size_t i = 0; i < sizeof(closing_states) / sizeof(closing_states[0]); i++) {
			int s = closing_states[i];

			if (!(r->visited & (1u << s)))
				continue;
			put_lit(l, " ");
			put_str(l, state_name(s));
			put_lit(l, "=");
			put_duration(l, r->state_ns[s]);
		}
		if (r->flags & CT_F_TIMEWAIT)
			put_str(l, r->flags & CT_F_TW_FIN_WAIT2 ? " -> TIME_WAIT(orphan FIN_WAIT2)" :
								   " -> TIME_WAIT");
		if (r->flags & CT_F_TW_UNTRACKED)
			put_lit(l, " (untracked: --max-timewait full)");
		else if (r->flags & CT_F_TW_NOT_CREATED)
			put_lit(l, " -> no TIME_WAIT (table full)");
		if (r->app_method) {
			put_lit(l, " app:");
			put_str(l, method_name(r->app_method));
		}
		if (r->flags & CT_F_EXITING) {
			put_lit(l, " (process exiting");
			if (r->exit_signal) {
				put_lit(l, ", signal ");
				put_u64(l, r->exit_signal);
			}
			put_lit(l, ")");
		}
		if (r->linger) {
			put_lit(l, " linger:");
			put_str(l, linger_name(r->linger));
		}
		if (r->flags & CT_F_PREEXISTING)
			put_lit(l, " (seen mid-connection)");
		break;
	case CT_REC_TIMEWAIT:
		put_lit(l, " ");
		put_str(l, tw_end_name(r->tw_end));
		/* "~": the FIN_WAIT2 / TIME_WAIT split is within one jiffy (emit_tw_end()) */
		put_str(l, r->flags & CT_F_TW_SPLIT_ESTIMATED ? " TIME_WAIT=~" : " TIME_WAIT=");
		put_duration(l, r->tw_ns);
		if (r->state_ns[TCP_FIN_WAIT2] && (r->flags & CT_F_TW_FIN_WAIT2)) {
			put_str(l, r->flags & CT_F_TW_SPLIT_ESTIMATED ? " FIN_WAIT2=~" : " FIN_WAIT2=");
			put_duration(l, r->state_ns[TCP_FIN_WAIT2]);
		}
		if (r->tw_end == CT_TW_REUSED) {
			put_lit(l, " by ");
			put_u64(l, r->reuse_pid);
			put_lit(l, "/");
			put_mem(l, r->reuse_comm, strnlen(r->reuse_comm, CT_COMM_LEN));
		}
		if (r->flags & CT_F_PREEXISTING)
			put_str(l, r->flags & CT_F_AGE_ESTIMATE ? " (older than the tracer, age estimated)" :
								  " (older than the tracer, at least)");
		break;
	case CT_REC_STATE:
		put_lit(l, " ");
		put_str(l, state_name(r->oldstate));
		put_lit(l, " -> ");
		put_str(l, state_name(r->newstate));
		break;
	case CT_REC_CONNECT_FAIL:
		put_lit(l, " connect() EADDRNOTAVAIL: no free local port");
		break;
	case CT_REC_CLOSE_DEFERRED:
		put_fmt(l, " close(fd %u) closed nothing: %s socket kept open by %u more reference%s",
			r->fd, state_name(r->state), r->refs, r->refs == 1 ? "" : "s");
		break;
	case CT_REC_BIND_CONFLICT:
		put_fmt(l, " %s() failed with EADDRINUSE (fd %u)", syscall_name(r->syscall), r->fd);
		break;
	case CT_REC_HOLDER:
		if (r->pid)
			put_fmt(l, " still held by this process as fd %u", r->fd);
		else
			put_lit(l, " no other holder found");
		if (r->flags & CT_F_INCOMPLETE)
			put_lit(l, " (the /proc scan gave up early)");
		break;
	case CT_REC_PORT_USER:
		if (r->state == TCP_TIME_WAIT) {
			put_fmt(l, " %u TIME_WAIT socket%s on the port, the oldest ", r->refs,
				r->refs == 1 ? "" : "s");
			put_duration(l, r->age_ns);
			put_lit(l, " old, the last ends in ");
			put_duration(l, r->expires_ns);
		} else {
			put_fmt(l, " %s socket on the port", state_name(r->state));
			if (r->pid)
				put_fmt(l, ", owner fd %u", r->fd);
		}
		if (r->flags & CT_F_INCOMPLETE)
			put_lit(l, " (the /proc scan gave up early)");
		break;
	case CT_REC_WATCH:
		if (r->flags & CT_F_WATCH_CLOSED) {
			put_lit(l, " closed after ");
			put_duration(l, r->age_ns);
			put_lit(l, " in ");
			put_str(l, state_name(r->state));
		} else {
			put_fmt(l, " in %s for %s", state_name(r->state),
				r->flags & CT_F_AGE_AT_LEAST ? "at least " : "");
			put_duration(l, r->age_ns);
		}
		break;
	case CT_REC_WATCH_COUNT:
		put_fmt(l, " %u socket%s in %s past the threshold, the oldest ", r->refs,
			r->refs == 1 ? "" : "s", state_name(r->state));
		put_duration(l, r->age_ns);
		break;
	}
}

/* "a.b.c.d:port" or "[v6]:port", padded to a column of 26 and a space */
static void put_endpoint(struct line *l, uint16_t family, const uint8_t *addr, uint16_t port)
{
	size_t start = l->n;

	if (family == AF_INET) {
		put_addr(l, family, addr);
		put_lit(l, ":");
	} else {
		put_lit(l, "[");
		put_addr(l, family, addr);
		put_lit(l, "]:");
	}
	put_u64(l, port);
	put_pad_from(l, start, 26);
	put_lit(l, " ");
}

/*
 * "HH:MM:SS.mmm ": localtime_r() and strftime() once per second shown,
 * not once per line (the loader formats from one thread).
 */
static void put_time(struct line *l, int64_t real)
{
	static bool cached;
	static time_t cached_sec;
	static char hms[16];
	static size_t hms_len;
	time_t sec = real / 1000000000;
	long long ms = real % 1000000000 / 1000000;

	if (!cached || sec != cached_sec) {
		struct tm tm;

		localtime_r(&sec, &tm);
		hms_len = strftime(hms, sizeof(hms), "%H:%M:%S", &tm);
		cached_sec = sec;
		cached = true;
	}
	put_mem(l, hms, hms_len);
	if (ms < 0) {
		put_fmt(l, ".%03lld ", ms);
		return;
	}
	put_lit(l, ".");
	if (put_room(l, 3))
		l->n = fmt_u64_zero(l->b + l->n, ms, 3) - l->b;
	put_lit(l, " ");
}

static void output_table(const struct ct_output *o, const struct ct_record *r)
{
	struct line l;

	l.n = 0;
	if (o->timestamps)
		put_time(&l, (int64_t)r->ts_ns + o->mono_to_real_ns);
	if (r->pid) {
		size_t start = l.n;

		put_u64(&l, r->pid);
		put_pad_from(&l, start, 7);
		put_lit(&l, " ");
	} else {
		put_lit(&l, "?       ");
	}
	put_pad(&l, r->pid ? r->comm : "?", CT_COMM_LEN, 15);
	put_lit(&l, " ");
	put_pad(&l, event_name(r->kind), 32, 8);
	put_lit(&l, " ");
	put_endpoint(&l, r->family, r->laddr, r->lport);
	put_endpoint(&l, r->family, r->raddr, r->rport);
	put_pad(&l, r->kind <= CT_REC_STATE ? initiator_name(r->initiator) : "-", 32, 12);
	put_lit(&l, " ");
	put_pad(&l, r->kind == CT_REC_CLOSE || r->kind == CT_REC_TIMEWAIT ? method_name(r->method) : "-",
		32, 12);
	table_details(&l, r);
	put_lit(&l, "\n");
	fwrite(l.b, 1, l.n, o->out);
}

void output_record(const struct ct_output *o, const struct ct_record *r)
{
	if (o->json)
		output_json(o, r);
	else
		output_table(o, r);
}

void output_stats(const struct ct_output *o, const struct ct_stats *s)
{
	if (o->json) {
		fprintf(o->out,
			"{\"event\":\"stats\",\"records\":%llu,\"lost\":%llu,\"socks_map_full\":%llu,\"tw_map_full\":%llu,"
			"\"missed_events\":%llu",
			(unsigned long long)s->records, (unsigned long long)s->lost,
			(unsigned long long)s->socks_full, (unsigned long long)s->tw_full,
			(unsigned long long)s->missed);
		/* 0 only in recordings made before start-up was counted */
		if (s->startup_ms)
			fprintf(o->out, ",\"startup_ms\":%llu,\"preexisting\":%llu,\"preexisting_untracked\":%llu",
				(unsigned long long)s->startup_ms, (unsigned long long)s->preexisting,
				(unsigned long long)s->preexisting_untracked);
		fputs("}\n", o->out);
	}
	if (s->preexisting_untracked)
		fprintf(stderr, "closetrace: %llu timewait sockets older than the tracer were not followed\n",
			(unsigned long long)s->preexisting_untracked);
	if (s->lost || s->socks_full || s->tw_full)
		fprintf(stderr,
			"closetrace: %llu records lost (ring buffer full), %llu connections and %llu TIME_WAITs untracked (maps full)\n",
			(unsigned long long)s->lost, (unsigned long long)s->socks_full,
			(unsigned long long)s->tw_full);
	if (s->missed)
		fprintf(stderr,
			"closetrace: %llu kernel events missed (a tracepoint fired again on the same CPU while "
			"closetrace's program for it ran; the kernel skips such nested runs): records may be missing\n",
			(unsigned long long)s->missed);
}
