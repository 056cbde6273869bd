// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * "Address already in use": which TCP sockets use a port right now
 * (sock_diag), which processes own them (/proc/PID/fd), and what that
 * means for a new bind().
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <netinet/tcp.h>
#include "output.h"
#include "why_busy.h"

#define ENDPOINT_LEN 64 /* "[" INET6_ADDRSTRLEN "]:65535" */

static const char *const verdict_names[] = {
	[WHY_FREE] = "free",
	[WHY_LISTEN] = "listen",
	[WHY_BOUND] = "bound",
	[WHY_CONNECTIONS] = "connections",
	[WHY_TIMEWAIT] = "timewait",
};

const char *why_busy_verdict_name(enum why_busy_verdict v)
{
	if ((unsigned int)v >= sizeof(verdict_names) / sizeof(verdict_names[0]))
		return "?";
	return verdict_names[v];
}

/* what stops a new socket from binding first: a listener, then a bound socket, ... */
static enum why_busy_verdict verdict_of(const struct port_report *r)
{
	if (r->n_listen)
		return WHY_LISTEN;
	if (r->n_bound)
		return WHY_BOUND;
	if (r->n_established || r->n_other)
		return WHY_CONNECTIONS;
	if (r->n_timewait)
		return WHY_TIMEWAIT;
	return WHY_FREE;
}

/* inodes of the sockets a process can own: timewait and request sockets have none */
static int owned_inodes(const struct port_report *r, uint64_t **out)
{
	uint64_t *ino;
	int n = 0;

	*out = NULL;
	if (!r->n)
		return 0;
	ino = malloc(r->n * sizeof(*ino));
	if (!ino)
		return -ENOMEM;
	for (int i = 0; i < r->n; i++)
		if (r->socks[i].inode && port_socket_class(&r->socks[i]) != PORT_TIMEWAIT)
			ino[n++] = r->socks[i].inode;
	*out = ino;
	return n;
}

int why_busy_collect(uint16_t port, int netns_fd, unsigned int budget_ms, struct why_busy *wb)
{
	uint64_t *inodes;
	int err, n;

	memset(wb, 0, sizeof(*wb));
	err = sockdiag_port_netns(port, netns_fd, &wb->rep);
	if (err)
		return err;
	wb->verdict = verdict_of(&wb->rep);
	n = owned_inodes(&wb->rep, &inodes);
	if (n < 0)
		wb->scan_err = n;
	else if (n > 0)
		wb->scan_err = holders_find(inodes, n, WHY_BUSY_MAX_HOLDERS, budget_ms, &wb->scan);
	free(inodes);
	return 0;
}

void why_busy_free(struct why_busy *wb)
{
	port_report_free(&wb->rep);
	holder_scan_free(&wb->scan);
}

/* ---- text ---- */

static void format_endpoint(uint8_t family, const uint8_t *addr, uint16_t port, char *buf,
			    size_t len)
{
	char a[48];

	format_addr(family, addr, a, sizeof(a));
	snprintf(buf, len, family == AF_INET6 ? "[%s]:%u" : "%s:%u", a, port);
}

static void format_ms(uint64_t ms, char *buf, size_t len)
{
	format_duration(ms * 1000000ULL, buf, len);
}

/* comm may hold any byte but NUL; keep a terminal sane */
static const char *clean_comm(const char *comm, char out[16])
{
	int i;

	for (i = 0; i < 15 && comm[i]; i++)
		out[i] = (unsigned char)comm[i] < 0x20 || comm[i] == 0x7f ? '?' : comm[i];
	out[i] = '\0';
	return out;
}

static const char *state_label(const struct port_socket *s)
{
	if (port_socket_class(s) == PORT_TIMEWAIT)
		return s->state == TCP_FIN_WAIT2 ? "TIME_WAIT(FIN_WAIT2)" : "TIME_WAIT";
	return s->state == SOCKDIAG_STATE_BOUND ? "BOUND" : state_name(s->state);
}

/* why a socket has no owner to show */
static const char *no_owner_reason(const struct why_busy *wb, const struct port_socket *s)
{
	if (!s->inode) {
		if (s->state == TCP_SYN_RECV)
			return "no owner yet: a connection not yet accepted";
		return "no owner: orphaned, closed by its process, the kernel finishes the close";
	}
	if (wb->scan_err)
		return "owner not looked up";
	if (wb->scan.gave_up)
		return "owner not found (scan stopped early)";
	return "owner not found (another PID namespace, or a kernel socket)";
}

static void write_owners(FILE *f, const struct why_busy *wb, const struct port_socket *s)
{
	const struct holder *h;
	char comm[16];
	int n;

	h = s->inode ? holders_of(&wb->scan, s->inode, &n) : NULL;
	if (!h) {
		fputs(no_owner_reason(wb, s), f);
		return;
	}
	fputs(n > 1 ? "owners " : "owner ", f);
	for (int i = 0; i < n && i < WHY_BUSY_MAX_OWNERS; i++)
		fprintf(f, "%s%" PRIu32 "/%s fd %d", i ? ", " : "", h[i].pid,
			clean_comm(h[i].comm, comm), h[i].fd);
	if (n > WHY_BUSY_MAX_OWNERS)
		fprintf(f, " (+%d more)", n - WHY_BUSY_MAX_OWNERS);
}

/* distinct owner pids of the sockets of one class: "12 (nginx)", "12 (nginx), 13 (nginx)" */
static void write_owner_pids(FILE *f, const struct why_busy *wb, enum port_class c, bool bound_only)
{
	uint32_t seen[4];
	int n_seen = 0, more = 0;
	char comm[16];

	for (int i = 0; i < wb->rep.n; i++) {
		const struct port_socket *s = &wb->rep.socks[i];
		const struct holder *h;
		int n;

		if (port_socket_class(s) != c || (bound_only && s->state != SOCKDIAG_STATE_BOUND))
			continue;
		h = s->inode ? holders_of(&wb->scan, s->inode, &n) : NULL;
		for (int j = 0; h && j < n; j++) {
			int k = 0;

			while (k < n_seen && seen[k] != h[j].pid)
				k++;
			if (k < n_seen)
				continue;
			if (n_seen == 4) {
				more++;
				continue;
			}
			seen[n_seen++] = h[j].pid;
			fprintf(f, "%s%" PRIu32 " (%s)", n_seen == 1 ? "" : ", ", h[j].pid,
				clean_comm(h[j].comm, comm));
		}
	}
	if (!n_seen)
		fputs("a process not found", f);
	else if (more)
		fprintf(f, " and %d more", more);
}

static void write_tw_summary(FILE *f, const struct port_report *r)
{
	int64_t age = port_report_tw_oldest_age_ms(r);
	char a[32], b[32];

	fprintf(f, ", %d TIME_WAIT", r->n_timewait);
	if (!r->n_timewait)
		return;
	format_ms(r->tw_max_expires_ms, b, sizeof(b));
	if (age >= 0) {
		format_ms(age, a, sizeof(a));
		fprintf(f, " (oldest %s old, last one ends in %s)", a, b);
	} else {
		fprintf(f, " (last one ends in %s)", b);
	}
}

/* ", 2 other (1 BOUND, 1 CLOSE_WAIT)" from the sockets kept */
static void write_other_summary(FILE *f, const struct port_report *r)
{
	int by_state[CT_NSTATES] = { 0 };
	bool first = true;

	if (!r->n_other)
		return;
	for (int i = 0; i < r->n; i++)
		if (port_socket_class(&r->socks[i]) == PORT_OTHER && r->socks[i].state < CT_NSTATES)
			by_state[r->socks[i].state]++;
	fprintf(f, ", %d other (", r->n_other);
	for (int st = 0; st < CT_NSTATES; st++) {
		if (!by_state[st])
			continue;
		fprintf(f, "%s%d %s", first ? "" : ", ", by_state[st],
			st == SOCKDIAG_STATE_BOUND ? "BOUND" : state_name(st));
		first = false;
	}
	fputc(')', f);
}

static const struct port_socket *first_of(const struct port_report *r, enum port_class c)
{
	for (int i = 0; i < r->n; i++)
		if (port_socket_class(&r->socks[i]) == c)
			return &r->socks[i];
	return NULL;
}

static void write_summary(FILE *f, const struct why_busy *wb)
{
	const struct port_report *r = &wb->rep;
	const struct port_socket *l = first_of(r, PORT_LISTEN);
	char ep[ENDPOINT_LEN];

	fprintf(f, "port %u: ", r->port);
	if (wb->verdict == WHY_FREE) {
		fputs("free: no TCP socket in this network namespace uses it as its local port\n",
		      f);
		return;
	}
	if (!r->n_listen) {
		fputs("no LISTEN socket", f);
	} else {
		fprintf(f, "held by %d LISTEN socket%s", r->n_listen, r->n_listen > 1 ? "s" : "");
		if (l) {
			format_endpoint(l->family, l->laddr, l->lport, ep, sizeof(ep));
			fprintf(f, " (%s, ", ep);
			write_owners(f, wb, l);
			if (r->n_listen > 1)
				fprintf(f, "; +%d more", r->n_listen - 1);
			fputc(')', f);
		}
	}
	fprintf(f, ", %d established", r->n_established);
	write_tw_summary(f, r);
	write_other_summary(f, r);
	fputc('\n', f);
}

static void write_connections_meaning(FILE *f, const struct port_report *r)
{
	int n = r->n_established + r->n_other, orphans = 0;

	for (int i = 0; i < r->n; i++)
		if (!r->socks[i].inode && port_socket_class(&r->socks[i]) != PORT_TIMEWAIT)
			orphans++;
	fprintf(f,
		"nothing listens, but %d connection%s still use%s the port as local port "
		"(left from an earlier listener, or outgoing connections bound to it); "
		"a new listener gets EADDRINUSE unless it and these sockets all set SO_REUSEADDR",
		n, n > 1 ? "s" : "", n > 1 ? "" : "s");
	if (orphans)
		fprintf(f, "; %d %s no owner and end%s on their own", orphans,
			orphans > 1 ? "have" : "has", orphans > 1 ? "" : "s");
	fputc('\n', f);
}

static void write_meaning(FILE *f, const struct why_busy *wb)
{
	const struct port_report *r = &wb->rep;
	char t[32];

	fputs("  meaning: ", f);
	switch (wb->verdict) {
	case WHY_FREE:
		/* sock_diag shows bound-only sockets since 6.8 (TCPF_BOUND_INACTIVE) */
		fputs("nothing holds the port now; an earlier EADDRINUSE came from a socket "
		      "closed since, from another network namespace, or (before Linux 6.8) "
		      "from a bound-only socket sock_diag cannot show\n",
		      f);
		return;
	case WHY_LISTEN:
		/*
		 * inet_bind_conflict(): SO_REUSEADDR never shares with a
		 * listener; SO_REUSEPORT on both does, for the same uid.
		 */
		fputs("held by a listening socket of PID ", f);
		write_owner_pids(f, wb, PORT_LISTEN, false);
		fputs("; bind() to this address and port gets EADDRINUSE until that socket "
		      "is closed (only SO_REUSEPORT on every socket, same user, lets them "
		      "share it)\n",
		      f);
		return;
	case WHY_BOUND:
		fputs("a socket of PID ", f);
		write_owner_pids(f, wb, PORT_OTHER, true);
		fputs(" is bound to the port without listening or connecting; "
		      "it reserves the port until it is closed\n",
		      f);
		return;
	case WHY_CONNECTIONS:
		write_connections_meaning(f, r);
		return;
	case WHY_TIMEWAIT:
		format_ms(r->tw_max_expires_ms, t, sizeof(t));
		/*
		 * A timewait socket keeps sk_reuse of the socket it replaces
		 * (inet_twsk_alloc()), and inet_bind_conflict() lets a new socket
		 * share only when both have it.
		 */
		fprintf(f,
			"only TIME_WAIT sockets hold the port; they belong to no process "
			"(nothing to kill): a new listener without SO_REUSEADDR gets EADDRINUSE "
			"until the TIME_WAIT sockets end (in %s); with SO_REUSEADDR it binds now "
			"if the closed sockets had SO_REUSEADDR too\n",
			t);
		return;
	}
}

static void write_socket_line(FILE *f, const struct why_busy *wb, const struct port_socket *s)
{
	char l[ENDPOINT_LEN], rm[ENDPOINT_LEN];

	format_endpoint(s->family, s->laddr, s->lport, l, sizeof(l));
	fprintf(f, "  %-11s %s", state_label(s), l);
	/* listening and bound-only sockets have no peer */
	if (s->state != TCP_LISTEN && s->state != SOCKDIAG_STATE_BOUND) {
		format_endpoint(s->family, s->raddr, s->rport, rm, sizeof(rm));
		fprintf(f, " <-> %s", rm);
	}
	fprintf(f, "  inode %" PRIu64 "  ", s->inode);
	write_owners(f, wb, s);
	fputc('\n', f);
}

static void write_class_lines(FILE *f, const struct why_busy *wb, enum port_class c, int total,
			      const char *what)
{
	int shown = 0;

	for (int i = 0; i < wb->rep.n && shown < WHY_BUSY_MAX_LIST; i++) {
		if (port_socket_class(&wb->rep.socks[i]) != c)
			continue;
		write_socket_line(f, wb, &wb->rep.socks[i]);
		shown++;
	}
	if (total > shown)
		fprintf(f, "  ... and %d more %s\n", total - shown, what);
}

static void write_tw_line(FILE *f, const struct port_report *r)
{
	char t[32];

	if (!r->n_timewait)
		return;
	format_ms(r->tw_max_expires_ms, t, sizeof(t));
	fprintf(f,
		"  TIME_WAIT   %d socket%s, no owner (kept by the kernel after an active close)",
		r->n_timewait, r->n_timewait > 1 ? "s" : "");
	if (r->n_tw_fin_wait2)
		fprintf(f, ", %d of them orphaned FIN_WAIT2", r->n_tw_fin_wait2);
	fprintf(f, "; the last one ends in %s\n", t);
}

static void write_notes(FILE *f, const struct why_busy *wb)
{
	if (wb->scan_err)
		fprintf(f, "  note: owners not looked up: %s\n", strerror(-wb->scan_err));
	else if (wb->scan.gave_up)
		fprintf(f,
			"  note: owner scan stopped early (%s; %u ms, %" PRIu64
			" fds read): owners may be missing\n",
			wb->scan.why, wb->scan.elapsed_ms, wb->scan.fds_read);
	if (wb->rep.n_dropped)
		fprintf(f, "  note: %d sockets counted but not listed (over %d)\n",
			wb->rep.n_dropped, SOCKDIAG_MAX_SOCKETS);
}

void why_busy_write_text(const struct why_busy *wb, FILE *f)
{
	const struct port_report *r = &wb->rep;

	write_summary(f, wb);
	write_meaning(f, wb);
	write_class_lines(f, wb, PORT_LISTEN, r->n_listen, "LISTEN");
	write_class_lines(f, wb, PORT_ESTABLISHED, r->n_established, "ESTABLISHED");
	write_class_lines(f, wb, PORT_OTHER, r->n_other, "other");
	write_tw_line(f, r);
	write_notes(f, wb);
}

/* ---- JSON ---- */

static void json_owners(FILE *f, const struct why_busy *wb, const struct port_socket *s)
{
	const struct holder *h = NULL;
	int n = 0;

	if (s->inode)
		h = holders_of(&wb->scan, s->inode, &n);
	fputs(",\"owners\":[", f);
	for (int i = 0; h && i < n && i < WHY_BUSY_MAX_OWNERS; i++) {
		fprintf(f, "%s{\"pid\":%" PRIu32 ",\"comm\":", i ? "," : "", h[i].pid);
		json_string(f, h[i].comm, sizeof(h[i].comm));
		fprintf(f, ",\"fd\":%d}", h[i].fd);
	}
	fputc(']', f);
	if (n > WHY_BUSY_MAX_OWNERS)
		fprintf(f, ",\"owners_more\":%d", n - WHY_BUSY_MAX_OWNERS);
}

static void json_socket(FILE *f, const struct why_busy *wb, const struct port_socket *s, bool peer)
{
	char a[48];

	format_addr(s->family, s->laddr, a, sizeof(a));
	fprintf(f, "{\"family\":\"%s\",\"laddr\":\"%s\",\"lport\":%u",
		s->family == AF_INET6 ? "ipv6" : "ipv4", a, s->lport);
	if (peer) {
		format_addr(s->family, s->raddr, a, sizeof(a));
		fprintf(f, ",\"raddr\":\"%s\",\"rport\":%u,\"state\":\"%s\"", a, s->rport,
			state_label(s));
	}
	fprintf(f, ",\"inode\":%" PRIu64 ",\"uid\":%" PRIu32, s->inode, s->uid);
	json_owners(f, wb, s);
	fputc('}', f);
}

static void json_class(FILE *f, const struct why_busy *wb, enum port_class c, const char *key)
{
	int shown = 0;

	fprintf(f, ",\"%s\":[", key);
	for (int i = 0; i < wb->rep.n && shown < WHY_BUSY_MAX_LIST; i++) {
		const struct port_socket *s = &wb->rep.socks[i];

		if (port_socket_class(s) != c)
			continue;
		if (shown++)
			fputc(',', f);
		json_socket(f, wb, s, c != PORT_LISTEN);
	}
	fputc(']', f);
}

static void json_timewait(FILE *f, const struct port_report *r)
{
	int64_t age = port_report_tw_oldest_age_ms(r);

	fprintf(f, ",\"timewait\":{\"count\":%d,\"fin_wait2\":%d,\"oldest_age_ms\":", r->n_timewait,
		r->n_tw_fin_wait2);
	if (age >= 0)
		fprintf(f, "%" PRId64, age);
	else
		fputs("null", f);
	if (r->n_timewait)
		fprintf(f, ",\"last_expires_ms\":%" PRIu32 "}", r->tw_max_expires_ms);
	else
		fputs(",\"last_expires_ms\":null}", f);
}

static void json_scan(FILE *f, const struct why_busy *wb)
{
	const struct holder_scan *s = &wb->scan;

	fprintf(f, ",\"scan_incomplete\":%s", wb->scan_err || s->gave_up ? "true" : "false");
	fprintf(f,
		",\"scan\":{\"fds_read\":%" PRIu64 ",\"elapsed_ms\":%u,\"stopped\":", s->fds_read,
		s->elapsed_ms);
	if (s->gave_up)
		json_string(f, s->why, 32);
	else
		fputs("null", f);
	fputs(",\"error\":", f);
	if (wb->scan_err)
		json_string(f, strerror(-wb->scan_err), 128);
	else
		fputs("null", f);
	fputc('}', f);
}

void why_busy_write_json(const struct why_busy *wb, const char *lead_fields, FILE *f)
{
	const struct port_report *r = &wb->rep;

	fprintf(f, "{%s,\"port\":%u,\"verdict\":\"%s\"",
		lead_fields ? lead_fields : "\"event\":\"why_busy\"", r->port,
		why_busy_verdict_name(wb->verdict));
	json_class(f, wb, PORT_LISTEN, "listen");
	json_timewait(f, r);
	json_class(f, wb, PORT_ESTABLISHED, "established");
	json_class(f, wb, PORT_OTHER, "other");
	fprintf(f,
		",\"counts\":{\"listen\":%d,\"established\":%d,\"timewait\":%d,\"other\":%d,"
		"\"bound\":%d,\"not_listed\":%d}",
		r->n_listen, r->n_established, r->n_timewait, r->n_other, r->n_bound, r->n_dropped);
	json_scan(f, wb);
	fputc('}', f);
}

int why_busy_print(uint16_t port, bool json, FILE *f)
{
	struct why_busy wb;
	int err = why_busy_collect(port, -1, 0, &wb);

	if (err)
		return err;
	if (json) {
		why_busy_write_json(&wb, NULL, f);
		fputc('\n', f);
	} else {
		why_busy_write_text(&wb, f);
	}
	why_busy_free(&wb);
	return 0;
}
