// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Rendering records: the live table and JSON lines. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include "output.h"

/* indexed by the kernel's TCP state numbers (netinet/tcp.h: TCP_ESTABLISHED = 1 ...) */
static const char *const state_names[CT_NSTATES] = {
	[TCP_ESTABLISHED] = "ESTABLISHED", [TCP_SYN_SENT] = "SYN_SENT",
	[TCP_SYN_RECV] = "SYN_RECV",	   [TCP_FIN_WAIT1] = "FIN_WAIT1",
	[TCP_FIN_WAIT2] = "FIN_WAIT2",	   [TCP_TIME_WAIT] = "TIME_WAIT",
	[TCP_CLOSE] = "CLOSE",		   [TCP_CLOSE_WAIT] = "CLOSE_WAIT",
	[TCP_LAST_ACK] = "LAST_ACK",	   [TCP_LISTEN] = "LISTEN",
	[TCP_CLOSING] = "CLOSING",
};

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

void format_addr(uint16_t family, const uint8_t *addr, char *buf, size_t len)
{
	if (!inet_ntop(family == AF_INET ? AF_INET : AF_INET6, addr, buf, len))
		snprintf(buf, len, "?");
}

/* fixed point, rounded half up: no floating point on the hot path */
void format_duration(uint64_t ns, char *buf, size_t len)
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
	v = (ns + scale[i].unit / 2) / scale[i].unit; /* in 10^-decimals of the unit */
	div = scale[i].decimals == 1 ? 10 : 100;
	snprintf(buf, len, "%llu.%0*llu%s", (unsigned long long)(v / div), scale[i].decimals,
		 (unsigned long long)(v % div), scale[i].suffix);
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

/* comm may hold any byte; JSON strings must not */
void json_string(FILE *f, const char *s, size_t max)
{
	fputc('"', f);
	for (size_t i = 0; i < max && s[i]; i++) {
		unsigned char c = s[i];

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/*
 * A JSON line is built in memory with these and written at once: at full
 * connection churn, fprintf() was most of the loader's CPU.
 */
struct line {
	size_t n;
	char b[2048];
};

static void put_mem(struct line *l, const char *s, size_t n)
{
	if (l->n + n > sizeof(l->b))
		n = sizeof(l->b) - l->n;
	memcpy(l->b + l->n, s, n);
	l->n += n;
}

#define put_lit(l, s) put_mem(l, s, sizeof(s) - 1)

static void put_str(struct line *l, const char *s)
{
	put_mem(l, s, strlen(s));
}

/* at most max bytes of s, padded with spaces to width */
static void put_pad(struct line *l, const char *s, size_t max, size_t width)
{
	size_t n = strnlen(s, max);

	put_mem(l, s, n);
	while (n++ < width)
		put_mem(l, " ", 1);
}

static void put_fmt(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put_fmt(struct line *l, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(l->b + l->n, sizeof(l->b) - l->n, fmt, ap);
	va_end(ap);
	if (n > 0)
		l->n += (size_t)n < sizeof(l->b) - l->n ? (size_t)n : sizeof(l->b) - l->n - 1;
}

static void put_duration(struct line *l, uint64_t ns)
{
	char d[32];

	format_duration(ns, d, sizeof(d));
	put_str(l, d);
}

static void put_u64(struct line *l, unsigned long long v)
{
	char t[24];
	int i = sizeof(t);

	do
		t[--i] = '0' + v % 10;
	while (v /= 10);
	put_mem(l, t + i, sizeof(t) - i);
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

static void put_bool(struct line *l, bool b)
{
	if (b)
		put_lit(l, "true");
	else
		put_lit(l, "false");
}

/* ,"key":"value" and ,"key":number */
static void put_kstr(struct line *l, const char *key, const char *v)
{
	put_lit(l, ",\"");
	put_str(l, key);
	put_lit(l, "\":\"");
	put_str(l, v);
	put_lit(l, "\"");
}

static void put_knum(struct line *l, const char *key, unsigned long long v)
{
	put_lit(l, ",\"");
	put_str(l, key);
	put_lit(l, "\":");
	put_u64(l, v);
}

static void put_kbool(struct line *l, const char *key, bool v)
{
	put_lit(l, ",\"");
	put_str(l, key);
	put_lit(l, "\":");
	put_bool(l, v);
}

static void put_jstring(struct line *l, const char *s, size_t max)
{
	static const char hex[] = "0123456789abcdef";

	put_lit(l, "\"");
	for (size_t i = 0; i < max && s[i]; i++) {
		unsigned char c = s[i];
		char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };

		if (c == '"' || c == '\\') {
			e[1] = c;
			put_mem(l, e, 2);
		} else if (c < 0x20 || c >= 0x7f) {
			put_mem(l, e, 6);
		} else {
			put_mem(l, (const char *)&c, 1);
		}
	}
	put_lit(l, "\"");
}

static void json_states(struct line *l, const struct ct_record *r)
{
	bool first = true;

	put_lit(l, ",\"states\":{");
	for (int s = 1; s < CT_NSTATES; s++) {
		if (!(r->visited & (1u << s)) || s == TCP_CLOSE || s == TCP_LISTEN)
			continue;
		if (!first)
			put_lit(l, ",");
		put_lit(l, "\"");
		put_str(l, state_name(s));
		put_lit(l, "\":");
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
		if (r->flags & CT_F_TIMEWAIT)
			put_kstr(l, "timewait_substate",
				 r->flags & CT_F_TW_FIN_WAIT2 ? "FIN_WAIT2" : "TIME_WAIT");
		put_kbool(l, "rst_sent", r->flags & CT_F_RST_SENT);
		put_kbool(l, "rst_received", r->flags & CT_F_RST_RECEIVED);
		put_kbool(l, "preexisting", r->flags & CT_F_PREEXISTING);
		break;
	case CT_REC_TIMEWAIT:
		json_states(l, r);
		put_kstr(l, "end", tw_end_name(r->tw_end));
		put_knum(l, "duration_ns", r->tw_ns);
		put_knum(l, "tw_sock_ns", r->tw_sock_ns);
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
	char la[INET6_ADDRSTRLEN], ra[INET6_ADDRSTRLEN], frac[7];
	int64_t real = (int64_t)r->ts_ns + o->mono_to_real_ns;
	long long us = real % 1000000000 / 1000;
	struct line l;

	l.n = 0;
	format_addr(r->family, r->laddr, la, sizeof(la));
	format_addr(r->family, r->raddr, ra, sizeof(ra));
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
	put_kstr(&l, "laddr", la);
	put_knum(&l, "lport", r->lport);
	put_kstr(&l, "raddr", ra);
	put_knum(&l, "rport", r->rport);
	put_knum(&l, "netns", r->netns);
	put_kstr(&l, "initiator", initiator_name(r->initiator));
	json_kind_fields(&l, r);
	put_lit(&l, "}\n");
	fwrite(l.b, 1, l.n, o->out);
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
		else if (r->flags & CT_F_TW_NOT_CREATED)
			put_lit(l, " -> no TIME_WAIT (table full)");
		if (r->app_method) {
			put_lit(l, " app:");
			put_str(l, method_name(r->app_method));
		}
		if (r->flags & CT_F_EXITING) {
			put_lit(l, " (process exiting");
			if (r->exit_signal)
				put_fmt(l, ", signal %u", r->exit_signal);
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
		put_lit(l, " TIME_WAIT=");
		put_duration(l, r->tw_ns);
		if (r->state_ns[TCP_FIN_WAIT2] && (r->flags & CT_F_TW_FIN_WAIT2)) {
			put_lit(l, " FIN_WAIT2=");
			put_duration(l, r->state_ns[TCP_FIN_WAIT2]);
		}
		if (r->tw_end == CT_TW_REUSED)
			put_fmt(l, " by %u/%.*s", r->reuse_pid, CT_COMM_LEN, r->reuse_comm);
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

static void put_endpoint(struct line *l, uint16_t family, const uint8_t *addr, uint16_t port)
{
	char a[INET6_ADDRSTRLEN], e[INET6_ADDRSTRLEN + 8];

	format_addr(family, addr, a, sizeof(a));
	snprintf(e, sizeof(e), family == AF_INET ? "%s:%u" : "[%s]:%u", a, port);
	put_pad(l, e, sizeof(e), 26);
	put_lit(l, " ");
}

static void output_table(const struct ct_output *o, const struct ct_record *r)
{
	struct line l;

	l.n = 0;
	if (o->timestamps) {
		int64_t real = (int64_t)r->ts_ns + o->mono_to_real_ns;
		time_t sec = real / 1000000000;
		struct tm tm;
		char t[16];

		localtime_r(&sec, &tm);
		strftime(t, sizeof(t), "%H:%M:%S", &tm);
		put_fmt(&l, "%s.%03lld ", t, (long long)(real % 1000000000 / 1000000));
	}
	if (r->pid)
		put_fmt(&l, "%-7u ", r->pid);
	else
		put_lit(&l, "?       ");
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
	if (o->json)
		fprintf(o->out,
			"{\"event\":\"stats\",\"records\":%llu,\"lost\":%llu,\"socks_map_full\":%llu,\"tw_map_full\":%llu}\n",
			(unsigned long long)s->records, (unsigned long long)s->lost,
			(unsigned long long)s->socks_full, (unsigned long long)s->tw_full);
	if (s->lost || s->socks_full || s->tw_full)
		fprintf(stderr,
			"closetrace: %llu records lost (ring buffer full), %llu connections and %llu TIME_WAITs untracked (maps full)\n",
			(unsigned long long)s->lost, (unsigned long long)s->socks_full,
			(unsigned long long)s->tw_full);
}
