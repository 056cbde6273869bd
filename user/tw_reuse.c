// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "tw_reuse.h"

#define LOOPBACK_IFINDEX 1
#define NETNS_SLOTS 64

struct netns_tw {
	uint32_t netns;
	int64_t live; /* timewait sockets created minus ended, as traced */
};

struct tw_reuse {
	const struct ct_output *out;
	uint64_t reuses, violations, connect_fail;
	uint64_t youngest_ns; /* UINT64_MAX until a reuse is seen */
	struct netns_tw ns[NETNS_SLOTS];
};

static bool v4_loopback(const uint8_t *a)
{
	return a[0] == 127;
}

static bool v6_loopback(const uint8_t *a)
{
	static const uint8_t one[16] = { [15] = 1 };
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };

	return !memcmp(a, one, 16) || (!memcmp(a, mapped, 12) && a[12] == 127);
}

bool tw_is_loopback(const struct ct_record *r)
{
	/* SO_BINDTODEVICE to lo, or a loopback address at either end */
	if (r->bound_dev_if == LOOPBACK_IFINDEX)
		return true;
	if (r->family == AF_INET)
		return v4_loopback(r->laddr) || v4_loopback(r->raddr);
	return v6_loopback(r->laddr) || v6_loopback(r->raddr);
}

enum reuse_verdict tw_reuse_verdict(const struct ct_record *r, char *why, size_t len)
{
	uint64_t age_ms = r->tw_sock_ns / 1000000;

	/*
	 * tcp_twsk_unique(): a connect() on a port the application bound
	 * passes no twp, and then only the peer's timestamps matter: neither
	 * tcp_tw_reuse nor the delay is consulted.
	 */
	if (r->flags & CT_F_REUSE_BOUND) {
		snprintf(why, len, "port bound by the application: sysctl not consulted");
		return REUSE_OK;
	}
	if (r->flags & CT_F_END_FIN_WAIT2) {
		snprintf(why, len, "reused while still in FIN_WAIT2 (the kernel sets reuse=0 there)");
		return REUSE_VIOLATION;
	}
	if (r->reuse_sysctl == 0) {
		snprintf(why, len, "tcp_tw_reuse=0");
		return REUSE_VIOLATION;
	}
	if (r->reuse_sysctl == 2 && !tw_is_loopback(r)) {
		snprintf(why, len, "tcp_tw_reuse=2 (loopback only) but not loopback");
		return REUSE_VIOLATION;
	}
	/* time_after32(now_ms, tw_entry_stamp + delay); allow the ms rounding */
	if ((r->flags & CT_F_REUSE_DELAY) && age_ms + 1 < r->reuse_delay_ms) {
		snprintf(why, len, "age %llu ms < tcp_tw_reuse_delay %u ms",
			 (unsigned long long)age_ms, r->reuse_delay_ms);
		return REUSE_VIOLATION;
	}
	if (r->flags & CT_F_REUSE_DELAY)
		snprintf(why, len, "tcp_tw_reuse=%u, age >= tcp_tw_reuse_delay %u ms", r->reuse_sysctl,
			 r->reuse_delay_ms);
	else
		snprintf(why, len, "tcp_tw_reuse=%u (no tcp_tw_reuse_delay on this kernel)",
			 r->reuse_sysctl);
	return REUSE_OK;
}

struct tw_reuse *tw_reuse_new(const struct ct_output *out)
{
	struct tw_reuse *t = calloc(1, sizeof(*t));

	if (t) {
		t->out = out;
		t->youngest_ns = UINT64_MAX;
	}
	return t;
}

void tw_reuse_free(struct tw_reuse *t)
{
	free(t);
}

static struct netns_tw *netns_slot(struct tw_reuse *t, uint32_t netns)
{
	for (int i = 0; i < NETNS_SLOTS; i++) {
		if (t->ns[i].netns == netns)
			return &t->ns[i];
		if (!t->ns[i].netns) {
			t->ns[i].netns = netns;
			return &t->ns[i];
		}
	}
	return NULL; /* more namespaces than we count: counts stay unknown */
}

static void print_event(struct tw_reuse *t, const struct ct_record *r, const char *verdict,
			const char *why, int64_t live)
{
	FILE *f = t->out->out;
	char la[INET6_ADDRSTRLEN], ra[INET6_ADDRSTRLEN], age[32];

	format_addr(r->family, r->laddr, la, sizeof(la));
	format_addr(r->family, r->raddr, ra, sizeof(ra));
	if (r->kind == CT_REC_CONNECT_FAIL) {
		if (t->out->json)
		{
			fprintf(f, "{\"event\":\"connect_fail\",\"ts_ns\":%llu,\"pid\":%u,\"comm\":",
				(unsigned long long)r->ts_ns, r->pid);
			json_string(f, r->comm, CT_COMM_LEN);
			fprintf(f, ",\"raddr\":\"%s\",\"rport\":%u,\"netns\":%u,\"error\":\"EADDRNOTAVAIL\",\"timewait_live\":%lld}\n",
				ra, r->rport, r->netns, (long long)live);
		}
		else
			fprintf(f, "connect-fail %u/%.*s -> %s:%u EADDRNOTAVAIL with %lld TIME_WAIT sockets in the namespace\n",
				r->pid, CT_COMM_LEN, r->comm, ra, r->rport, (long long)live);
		return;
	}
	if (t->out->json) {
		fprintf(f, "{\"event\":\"tw_reuse\",\"conn_id\":%llu,\"ts_ns\":%llu,\"pid\":%u,\"comm\":",
			(unsigned long long)r->conn_id, (unsigned long long)r->ts_ns, r->reuse_pid);
		json_string(f, r->reuse_comm, CT_COMM_LEN);
		fprintf(f, ",\"family\":\"%s\",\"laddr\":\"%s\",\"lport\":%u,\"raddr\":\"%s\",\"rport\":%u,\"netns\":%u,\"age_ns\":%llu,\"loopback\":%s,\"bound\":%s,\"tcp_tw_reuse\":%u,",
			r->family == AF_INET ? "ipv4" : "ipv6", la, r->lport,
			ra, r->rport, r->netns, (unsigned long long)r->tw_sock_ns,
			tw_is_loopback(r) ? "true" : "false",
			r->flags & CT_F_REUSE_BOUND ? "true" : "false", r->reuse_sysctl);
		if (r->flags & CT_F_REUSE_DELAY)
			fprintf(f, "\"tcp_tw_reuse_delay_ms\":%u,", r->reuse_delay_ms);
		else
			fputs("\"tcp_tw_reuse_delay_ms\":null,", f);
		fprintf(f, "\"verdict\":\"%s\",\"why\":\"%s\"}\n", verdict, why);
		return;
	}
	format_duration(r->tw_sock_ns, age, sizeof(age));
	fprintf(f, "reuse %u/%.*s %s:%u -> %s:%u age %s %s: %s\n", r->reuse_pid, CT_COMM_LEN,
		r->reuse_comm, la, r->lport, ra, r->rport, age, verdict, why);
}

void tw_reuse_record(struct tw_reuse *t, const struct ct_record *r)
{
	struct netns_tw *ns = netns_slot(t, r->netns);
	enum reuse_verdict v;
	char why[128];

	switch (r->kind) {
	case CT_REC_CLOSE:
		if (ns && (r->flags & CT_F_TIMEWAIT))
			ns->live++;
		break;
	case CT_REC_TIMEWAIT:
		if (ns && ns->live > 0)
			ns->live--;
		if (r->tw_end != CT_TW_REUSED)
			break;
		v = tw_reuse_verdict(r, why, sizeof(why));
		t->reuses++;
		if (v == REUSE_VIOLATION)
			t->violations++;
		if (r->tw_sock_ns < t->youngest_ns)
			t->youngest_ns = r->tw_sock_ns;
		print_event(t, r, v == REUSE_OK ? "ok" : "VIOLATION", why, 0);
		break;
	case CT_REC_CONNECT_FAIL:
		t->connect_fail++;
		print_event(t, r, NULL, NULL, ns ? ns->live : -1);
		break;
	}
}

void tw_reuse_print_summary(const struct tw_reuse *t)
{
	FILE *f = t->out->out;
	char age[32] = "-";

	if (t->youngest_ns != UINT64_MAX)
		format_duration(t->youngest_ns, age, sizeof(age));
	if (t->out->json) {
		fprintf(f, "{\"event\":\"tw_reuse_summary\",\"reuses\":%llu,\"violations\":%llu,\"youngest_age_ns\":",
			(unsigned long long)t->reuses, (unsigned long long)t->violations);
		if (t->youngest_ns == UINT64_MAX)
			fputs("null", f);
		else
			fprintf(f, "%llu", (unsigned long long)t->youngest_ns);
		fprintf(f, ",\"connect_eaddrnotavail\":%llu}\n", (unsigned long long)t->connect_fail);
		return;
	}
	fprintf(f, "TIME_WAIT reuses: %llu, violations: %llu, youngest reuse: %s, connect() EADDRNOTAVAIL: %llu\n",
		(unsigned long long)t->reuses, (unsigned long long)t->violations, age,
		(unsigned long long)t->connect_fail);
}
