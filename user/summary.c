// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "output.h"
#include "summary.h"
#include "summary_account.h"

/* a small open-addressing table: fixed-size key -> struct ct_counts */
struct counts_table {
	size_t key_size;
	size_t len, cap;   /* entries */
	unsigned char *keys;
	struct ct_counts *vals;
	size_t nslots;	   /* power of two, > 2 * cap */
	int32_t *slots;	   /* index into keys/vals, -1 when empty */
};

struct summary_view {
	struct ct_summary s;
	struct counts_table procs;     /* key: __u32 pid */
	struct counts_table endpoints; /* key: struct ct_endpoint */
};

static uint64_t hash_bytes(const void *p, size_t n)
{
	const unsigned char *c = p;
	uint64_t h = 1469598103934665603ULL;

	while (n--)
		h = (h ^ *c++) * 1099511628211ULL;
	return h;
}

static void table_clear(struct counts_table *t)
{
	t->len = 0;
	if (t->slots)
		memset(t->slots, 0xff, t->nslots * sizeof(*t->slots));
}

static void table_free(struct counts_table *t)
{
	free(t->keys);
	free(t->vals);
	free(t->slots);
	memset(t, 0, sizeof(*t));
}

static int table_grow(struct counts_table *t)
{
	size_t cap = t->cap ? t->cap * 2 : 256, nslots = cap * 4;
	unsigned char *keys = realloc(t->keys, cap * t->key_size);
	struct ct_counts *vals;
	int32_t *slots;

	if (!keys)
		return -ENOMEM;
	t->keys = keys;
	vals = realloc(t->vals, cap * sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	t->vals = vals;
	slots = malloc(nslots * sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	memset(slots, 0xff, nslots * sizeof(*slots));
	for (size_t i = 0; i < t->len; i++) {
		size_t s = hash_bytes(t->keys + i * t->key_size, t->key_size) & (nslots - 1);

		while (slots[s] >= 0)
			s = (s + 1) & (nslots - 1);
		slots[s] = (int32_t)i;
	}
	free(t->slots);
	t->slots = slots;
	t->nslots = nslots;
	t->cap = cap;
	return 0;
}

static struct ct_counts *table_get(struct counts_table *t, const void *key, const char *comm)
{
	size_t s;

	if (t->len == t->cap && table_grow(t))
		return NULL;
	s = hash_bytes(key, t->key_size) & (t->nslots - 1);
	while (t->slots[s] >= 0) {
		size_t i = t->slots[s];

		if (!memcmp(t->keys + i * t->key_size, key, t->key_size))
			return &t->vals[i];
		s = (s + 1) & (t->nslots - 1);
	}
	memcpy(t->keys + t->len * t->key_size, key, t->key_size);
	memset(&t->vals[t->len], 0, sizeof(t->vals[0]));
	memcpy(t->vals[t->len].comm, comm, CT_COMM_LEN);
	t->slots[s] = (int32_t)t->len;
	return &t->vals[t->len++];
}

struct summary_view *summary_new(void)
{
	struct summary_view *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	v->procs.key_size = sizeof(__u32);
	v->endpoints.key_size = sizeof(struct ct_endpoint);
	return v;
}

void summary_free(struct summary_view *v)
{
	if (!v)
		return;
	table_free(&v->procs);
	table_free(&v->endpoints);
	free(v);
}

void summary_clear(struct summary_view *v)
{
	memset(&v->s, 0, sizeof(v->s));
	table_clear(&v->procs);
	table_clear(&v->endpoints);
}

const struct ct_summary *summary_totals(const struct summary_view *v)
{
	return &v->s;
}

void summary_add(struct summary_view *v, const struct ct_record *r)
{
	static const char no_comm[CT_COMM_LEN]; /* table_get() copies CT_COMM_LEN bytes */
	struct ct_endpoint e = {};
	struct ct_counts *c;

	ct_summary_account(&v->s, r);
	if (r->kind != CT_REC_CLOSE)
		return;
	c = table_get(&v->procs, &r->pid, r->comm);
	if (c)
		ct_counts_account(c, r);
	ct_endpoint_of(&e, r);
	c = table_get(&v->endpoints, &e, no_comm);
	if (c)
		ct_counts_account(c, r);
}

static int load_table(struct counts_table *t, int fd)
{
	unsigned char key[64], next[64];
	struct ct_counts val, *c;
	void *prev = NULL;

	table_clear(t);
	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		memcpy(key, next, t->key_size);
		prev = key;
		if (bpf_map_lookup_elem(fd, key, &val))
			continue; /* deleted meanwhile (LRU) */
		c = table_get(t, key, val.comm);
		if (!c)
			return -ENOMEM;
		*c = val;
	}
	return 0;
}

int summary_load_kernel(struct summary_view *v, int summary_fd, int proc_fd, int endpoint_fd)
{
	int ncpu = libbpf_num_possible_cpus();
	const size_t words = sizeof(struct ct_summary) / sizeof(__u64);
	__u64 *percpu, *sum = (__u64 *)&v->s;
	__u32 zero = 0;
	int err;

	if (ncpu <= 0)
		return ncpu ? ncpu : -EINVAL;
	percpu = calloc(ncpu, sizeof(struct ct_summary));
	if (!percpu)
		return -ENOMEM;
	err = bpf_map_lookup_elem(summary_fd, &zero, percpu);
	if (err) {
		err = -errno;
		free(percpu);
		return err;
	}
	memset(&v->s, 0, sizeof(v->s));
	for (int c = 0; c < ncpu; c++)
		for (size_t w = 0; w < words; w++)
			sum[w] += percpu[c * words + w];
	free(percpu);
	err = load_table(&v->procs, proc_fd);
	if (!err)
		err = load_table(&v->endpoints, endpoint_fd);
	return err;
}

/* ---- printing ---- */

struct ranked {
	const void *key;
	const struct ct_counts *c;
	size_t key_size;
};

static int rank_cmp(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;

	if (x->c->closes != y->c->closes)
		return x->c->closes > y->c->closes ? -1 : 1;
	if (x->c->tw_created != y->c->tw_created)
		return x->c->tw_created > y->c->tw_created ? -1 : 1;
	/* a stable order, so a live run and its replay print the same */
	return memcmp(x->key, y->key, x->key_size);
}

static struct ranked *rank(const struct counts_table *t)
{
	struct ranked *r = calloc(t->len ? t->len : 1, sizeof(*r));

	if (!r)
		return NULL;
	for (size_t i = 0; i < t->len; i++) {
		r[i].key = t->keys + i * t->key_size;
		r[i].c = &t->vals[i];
		r[i].key_size = t->key_size;
	}
	qsort(r, t->len, sizeof(*r), rank_cmp);
	return r;
}

static void endpoint_str(const struct ct_endpoint *e, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	format_addr(e->family, e->addr, a, sizeof(a));
	/* port 0: the clients of accepted connections, by address (ct_endpoint_of()) */
	if (!e->port)
		snprintf(buf, len, e->family == AF_INET ? "%s:*" : "[%s]:*", a);
	else
		snprintf(buf, len, e->family == AF_INET ? "%s:%u" : "[%s]:%u", a, e->port);
}

static void json_hist(FILE *f, const char *name, const __u64 *h, bool *first)
{
	bool any = false, inner = true;

	for (int i = 0; i < CT_HIST_SLOTS; i++)
		any |= h[i] != 0;
	if (!any)
		return;
	fprintf(f, "%s\"%s\":[", *first ? "" : ",", name);
	*first = false;
	for (int i = 0; i < CT_HIST_SLOTS; i++) {
		if (!h[i])
			continue;
		fprintf(f, "%s[%llu,%llu]", inner ? "" : ",", i ? 1ULL << i : 0ULL,
			(unsigned long long)h[i]);
		inner = false;
	}
	fputc(']', f);
}

static void json_counts(FILE *f, const struct ct_counts *c)
{
	fprintf(f, "\"closes\":%llu,\"local\":%llu,\"remote\":%llu,\"resets\":%llu,\"tw_created\":%llu",
		(unsigned long long)c->closes, (unsigned long long)c->local,
		(unsigned long long)c->remote, (unsigned long long)c->resets,
		(unsigned long long)c->tw_created);
}

static void print_json(const struct summary_view *v, FILE *f, int top)
{
	const struct ct_summary *s = &v->s;
	struct ranked *rp = rank(&v->procs), *re = rank(&v->endpoints);
	bool first = true;
	char ep[INET6_ADDRSTRLEN + 16];

	fprintf(f, "{\"event\":\"summary\",\"closes\":%llu,\"initiator\":{", (unsigned long long)s->closes);
	for (int i = 0; i < CT_INIT__MAX; i++)
		fprintf(f, "%s\"%s\":%llu", i ? "," : "", initiator_name(i),
			(unsigned long long)s->by_initiator[i]);
	fputs("},\"method\":{", f);
	for (int i = CT_M_CLOSE; i < CT_M__MAX; i++)
		fprintf(f, "%s\"%s\":%llu", i > CT_M_CLOSE ? "," : "", method_name(i),
			(unsigned long long)s->by_method[i]);
	fprintf(f, "},\"close_deferred\":%llu,\"bind_conflicts\":%llu",
		(unsigned long long)s->close_deferred, (unsigned long long)s->bind_conflicts);
	fprintf(f, ",\"tw_created\":%llu,\"tw_not_created\":%llu,\"tw_end\":{",
		(unsigned long long)s->tw_created, (unsigned long long)s->tw_not_created);
	for (int i = CT_TW_EXPIRED, n = 0; i < CT_TW__MAX; i++) {
		if (i == CT_TW_NOT_CREATED)
			continue;
		fprintf(f, "%s\"%s\":%llu", n++ ? "," : "", tw_end_name(i),
			(unsigned long long)s->tw_end[i]);
	}
	fprintf(f, "},\"rst_sent\":%llu,\"rst_received\":%llu,\"histograms_ns\":{",
		(unsigned long long)s->rst_sent, (unsigned long long)s->rst_received);
	for (int st = 1; st < CT_NSTATES; st++)
		json_hist(f, state_name(st), s->state_hist[st], &first);
	json_hist(f, "timewait", s->tw_hist, &first);
	json_hist(f, "reuse_age", s->reuse_age_hist, &first);
	fputs("},\"top_processes\":[", f);
	for (size_t i = 0; rp && i < v->procs.len && (int)i < top; i++) {
		fprintf(f, "%s{\"pid\":%u,\"comm\":", i ? "," : "", *(const __u32 *)rp[i].key);
		json_string(f, rp[i].c->comm, CT_COMM_LEN);
		fputc(',', f);
		json_counts(f, rp[i].c);
		fputc('}', f);
	}
	fputs("],\"top_remote\":[", f);
	for (size_t i = 0; re && i < v->endpoints.len && (int)i < top; i++) {
		endpoint_str(re[i].key, ep, sizeof(ep));
		fprintf(f, "%s{\"endpoint\":\"%s\",", i ? "," : "", ep);
		json_counts(f, re[i].c);
		fputc('}', f);
	}
	fputs("]}\n", f);
	free(rp);
	free(re);
}

static void print_hist(FILE *f, const char *name, const __u64 *h)
{
	__u64 max = 0, total = 0;
	int lo = -1, hi = -1;

	for (int i = 0; i < CT_HIST_SLOTS; i++) {
		if (!h[i])
			continue;
		if (lo < 0)
			lo = i;
		hi = i;
		total += h[i];
		if (h[i] > max)
			max = h[i];
	}
	if (lo < 0)
		return;
	fprintf(f, "\n  %s (%llu)\n", name, (unsigned long long)total);
	for (int i = lo; i <= hi; i++) {
		char a[32], b[32];
		int bar = (int)(h[i] * 40 / max);

		format_duration(i ? 1ULL << i : 0, a, sizeof(a));
		format_duration(1ULL << (i + 1), b, sizeof(b));
		fprintf(f, "    %9s .. %-9s %10llu |%-40.*s|\n", a, b, (unsigned long long)h[i], bar,
			"****************************************");
	}
}

static void print_table(const struct summary_view *v, FILE *f, int top)
{
	const struct ct_summary *s = &v->s;
	struct ranked *rp = rank(&v->procs), *re = rank(&v->endpoints);
	char ep[INET6_ADDRSTRLEN + 16];

	fprintf(f, "SUMMARY: %llu closes\n  initiator:", (unsigned long long)s->closes);
	for (int i = 0; i < CT_INIT__MAX; i++)
		if (i != CT_INIT_NONE || s->by_initiator[i])
			fprintf(f, " %s %llu", initiator_name(i), (unsigned long long)s->by_initiator[i]);
	fprintf(f, "\n  method:");
	for (int i = CT_M_CLOSE; i < CT_M__MAX; i++)
		fprintf(f, " %s %llu", method_name(i), (unsigned long long)s->by_method[i]);
	fprintf(f, "\n  close() kept open by other references: %llu; EADDRINUSE failures: %llu",
		(unsigned long long)s->close_deferred, (unsigned long long)s->bind_conflicts);
	fprintf(f, "\n  TIME_WAIT: created %llu, not created (table full) %llu; ended:",
		(unsigned long long)s->tw_created, (unsigned long long)s->tw_not_created);
	for (int i = CT_TW_EXPIRED; i < CT_TW__MAX; i++)
		if (i != CT_TW_NOT_CREATED)
			fprintf(f, " %s %llu", tw_end_name(i), (unsigned long long)s->tw_end[i]);
	fprintf(f, "\n  resets: sent on %llu connections, received on %llu\n",
		(unsigned long long)s->rst_sent, (unsigned long long)s->rst_received);
	for (int st = 1; st < CT_NSTATES; st++)
		print_hist(f, state_name(st), s->state_hist[st]);
	print_hist(f, "TIME_WAIT duration", s->tw_hist);
	print_hist(f, "TIME_WAIT age when reused", s->reuse_age_hist);

	fprintf(f, "\n  top processes by closes (TIME_WAIT = TIME_WAIT sockets they left)\n");
	fprintf(f, "    %-7s %-16s %8s %8s %8s %8s %9s\n", "PID", "COMM", "CLOSES", "LOCAL", "REMOTE",
		"RESETS", "TIME_WAIT");
	for (size_t i = 0; rp && i < v->procs.len && (int)i < top; i++)
		fprintf(f, "    %-7u %-16.*s %8llu %8llu %8llu %8llu %9llu\n", *(const __u32 *)rp[i].key,
			CT_COMM_LEN, rp[i].c->comm[0] ? rp[i].c->comm : "?",
			(unsigned long long)rp[i].c->closes, (unsigned long long)rp[i].c->local,
			(unsigned long long)rp[i].c->remote, (unsigned long long)rp[i].c->resets,
			(unsigned long long)rp[i].c->tw_created);
	fprintf(f, "\n  top remote endpoints by closes\n");
	fprintf(f, "    %-40s %8s %8s %8s %8s %9s\n", "REMOTE", "CLOSES", "LOCAL", "REMOTE", "RESETS",
		"TIME_WAIT");
	for (size_t i = 0; re && i < v->endpoints.len && (int)i < top; i++) {
		endpoint_str(re[i].key, ep, sizeof(ep));
		fprintf(f, "    %-40s %8llu %8llu %8llu %8llu %9llu\n", ep,
			(unsigned long long)re[i].c->closes, (unsigned long long)re[i].c->local,
			(unsigned long long)re[i].c->remote, (unsigned long long)re[i].c->resets,
			(unsigned long long)re[i].c->tw_created);
	}
	free(rp);
	free(re);
}

void summary_print(const struct summary_view *v, FILE *f, bool json, int top)
{
	if (json)
		print_json(v, f, top);
	else
		print_table(v, f, top);
}
