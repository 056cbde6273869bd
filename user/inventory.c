// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The sockets older than the tracer.  A full socket in a closing state is
 * picked up by the kernel side at its next state change (first_seen(),
 * CT_F_PREEXISTING); a timewait socket changes no state, so the kernel side
 * would never know it: the loader lists them here (sock_diag, one dump per
 * namespace) and enters each in tw_seeds by its cookie, which its first
 * timer event (expiry, kill, namespace exit) finds (tw_adopt()).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <bpf/bpf.h>
#include "closetrace.h"
#include "filter.h"
#include "inventory.h"
#include "procfs.h"
#include "sockdiag.h"

#define NS_SCAN_MAX 100000 /* /proc entries looked at, at most */
/*
 * A TIME_WAIT this much older than the programs cannot have been scheduled
 * after them: its age is TCP_TIMEWAIT_LEN minus idiag_expires, exact to a
 * jiffy (10 ms at HZ=100) and rounded to the millisecond.
 */
#define YOUNG_MARGIN_MS 50

/* -p: the process's socket inodes, sorted */
struct inodes {
	uint64_t *v;
	int n;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void inodes_read(uint32_t pid, struct inodes *in)
{
	in->v = calloc(PROCFS_MAX_SOCKETS, sizeof(*in->v));
	if (!in->v)
		return;
	in->n = proc_socket_inodes(pid, in->v, PROCFS_MAX_SOCKETS);
	if (in->n < 0)
		in->n = 0;
	qsort(in->v, in->n, sizeof(*in->v), cmp_u64);
}

static bool inodes_have(const struct inodes *in, uint64_t ino)
{
	return ino && in->v && bsearch(&ino, in->v, in->n, sizeof(*in->v), cmp_u64);
}

/* where the seeds go */
struct seeding {
	int seeds_fd, tws_fd;
	void *tws_value;	/* a buffer for a tws value */
	bool cookie_ids;
	uint64_t *left;		/* the kernel side's tw_seeds_left */
	uint64_t attached_ns;	/* when the programs were attached */
	struct inodes pid_inodes; /* -p */
};

struct ns_set {
	uint32_t ino[INVENTORY_MAX_NETNS];
	int fd[INVENTORY_MAX_NETNS];
	uint32_t pid[INVENTORY_MAX_NETNS]; /* a process in it, 0: none known */
	int n;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* open path, and keep it if it is a namespace not in the set yet */
static void ns_add(struct ns_set *s, const char *path, uint32_t pid)
{
	struct stat st;
	int fd;

	if (s->n >= INVENTORY_MAX_NETNS || stat(path, &st))
		return;
	for (int i = 0; i < s->n; i++)
		if (s->ino[i] == (uint32_t)st.st_ino)
			return;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	s->ino[s->n] = (uint32_t)st.st_ino;
	s->pid[s->n] = pid;
	s->fd[s->n++] = fd;
}

static void ns_scan(struct ns_set *s, const char *dir, const char *suffix)
{
	char path[512];
	struct dirent *de;
	DIR *d = opendir(dir);
	int max = NS_SCAN_MAX;

	if (!d)
		return;
	while (max-- > 0 && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (*suffix && (de->d_name[0] < '0' || de->d_name[0] > '9'))
			continue; /* /proc: processes only */
		snprintf(path, sizeof(path), "%s/%s%s", dir, de->d_name, suffix);
		ns_add(s, path, *suffix ? (uint32_t)strtoul(de->d_name, NULL, 10) : 0);
	}
	closedir(d);
}

/*
 * The namespaces traced: --netns's, -p's process's, else every one that a
 * name in /var/run/netns or a process holds (a namespace kept alive only by
 * a socket or a bind mount elsewhere cannot be reached).
 */
static void ns_collect(const struct ct_options *o, struct ns_set *s)
{
	char path[64];
	int fd;

	if (o->netns || o->pid) {
		uint32_t ino = o->netns ? o->netns : proc_netns(o->pid);

		fd = ino ? netns_open(ino, o->pid) : -1;
		if (fd >= 0) {
			s->ino[0] = ino;
			s->fd[0] = fd;
			s->pid[0] = o->pid;
			s->n = 1;
		}
		return;
	}
	snprintf(path, sizeof(path), "/proc/%d/ns/net", getpid());
	ns_add(s, path, (uint32_t)getpid());
	ns_scan(s, "/var/run/netns", "");
	ns_scan(s, "/proc", "/ns/net");
}

/* the same filters as the kernel side's wanted(), but the process */
static bool socket_wanted(const struct ct_options *o, uint32_t netns, const struct port_socket *ps)
{
	struct ct_record r = { .netns = netns, .pid = o->pid, .family = ps->family,
			       .lport = ps->lport, .rport = ps->rport };

	memcpy(r.laddr, ps->laddr, sizeof(r.laddr));
	return record_wanted(o, &r);
}

/*
 * A timewait socket's seed.  In TIME_WAIT proper it has been so for
 * TCP_TIMEWAIT_LEN minus what is left (an estimate: a FIN retransmitted by
 * the peer re-arms the timer, tcp_timewait_state_process()); in FIN_WAIT2
 * its timeout (tcp_fin_timeout or TCP_LINGER2 of a namespace or socket we
 * cannot read) is unknown: its durations count from now.
 */
static void seed_of(const struct port_socket *ps, uint64_t now, bool cookie_ids,
		    struct ct_tw_seed *seed)
{
	memset(seed, 0, sizeof(*seed));
	seed->conn_id = cookie_ids ? ps->cookie : 0;
	seed->flags = CT_F_PREEXISTING;
	seed->start_ns = now;
	if (ps->state == TCP_FIN_WAIT2) {
		seed->flags |= CT_F_TW_FIN_WAIT2;
		seed->initiator = CT_INIT_LOCAL; /* an orphan after our FIN */
		return;
	}
	seed->initiator = CT_INIT_UNKNOWN; /* our FIN first, or simultaneous */
	if (ps->expires_ms <= SOCKDIAG_TIMEWAIT_LEN_MS) {
		uint64_t age = (uint64_t)(SOCKDIAG_TIMEWAIT_LEN_MS - ps->expires_ms) * 1000000ULL;

		if (age < now) {
			seed->start_ns = now - age;
			seed->flags |= CT_F_AGE_ESTIMATE;
		}
	}
}

/* seeds of one namespace, entered at once (bpf_map_update_batch(), Linux 5.6) */
struct seed_batch {
	uint64_t *keys;
	struct ct_tw_seed *vals;
	uint32_t n, cap;
};

static int batch_add(struct seed_batch *b, uint64_t key, const struct ct_tw_seed *seed)
{
	if (b->n == b->cap) {
		uint32_t cap = b->cap ? b->cap * 2 : 1024;
		uint64_t *k = realloc(b->keys, cap * sizeof(*k));
		struct ct_tw_seed *v;

		if (!k)
			return -ENOMEM;
		b->keys = k;
		v = realloc(b->vals, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		b->vals = v;
		b->cap = cap;
	}
	b->keys[b->n] = key;
	b->vals[b->n++] = *seed;
	return 0;
}

/*
 * Enter the batch; the kernel side's count of seeds left is raised first,
 * as it adopts a seed as soon as it is in.  generic_map_update_batch()
 * takes no BPF_NOEXIST (cookies are unique: BPF_ANY) and stops at an
 * element it cannot enter (the map full), telling how many went in; that
 * one is counted and the batch goes on after it.  A refusal of the whole
 * batch (no batch updates) leaves count as it was: one at a time then.
 */
static void batch_flush(struct seed_batch *b, int seeds_fd, uint64_t *left, struct inventory *inv)
{
	uint32_t done = 0;
	bool singly = false;

	__atomic_add_fetch(left, b->n, __ATOMIC_SEQ_CST);
	while (done < b->n) {
		uint32_t count = b->n - done;
		int err;

		if (singly) {
			err = bpf_map_update_elem(seeds_fd, &b->keys[done], &b->vals[done], BPF_ANY);
			count = err ? 0 : 1;
		} else {
			err = bpf_map_update_batch(seeds_fd, b->keys + done, b->vals + done, &count, NULL);
			if (err && count >= b->n - done) {
				singly = true;
				continue;
			}
		}
		inv->seeded += count;
		done += count;
		if (err && done < b->n) {
			__atomic_sub_fetch(left, 1, __ATOMIC_SEQ_CST);
			inv->not_followed++;
			done++;
		}
	}
	b->n = 0;
}

/*
 * Is the timewait socket followed already (in tws: scheduled after the
 * programs were attached)?  Only one young enough can be: asked of the
 * map only then, the rest needs no system call of its own.
 */
static bool followed(const struct port_socket *ps, uint64_t since_attach_ms, int tws_fd, void *tws_value)
{
	uint64_t key = ps->cookie;

	if (ps->state == TCP_TIME_WAIT && ps->expires_ms <= SOCKDIAG_TIMEWAIT_LEN_MS &&
	    SOCKDIAG_TIMEWAIT_LEN_MS - ps->expires_ms > since_attach_ms + YOUNG_MARGIN_MS)
		return false;
	return !bpf_map_lookup_elem(tws_fd, &key, tws_value);
}

/*
 * A namespace without a TCP socket, from a process in it: its
 * /proc/PID/net/sockstat counts the namespace's hashed TCP sockets (inuse:
 * all but timewait ones) and timewait sockets (tw).  Cheaper than a dump,
 * which walks the whole established hash.  The pid must still be in ino.
 */
static bool ns_no_tcp(uint32_t pid, uint32_t ino)
{
	char path[64], line[256];
	int inuse = -1, tw = -1;
	struct stat st;
	FILE *f;

	if (!pid)
		return false;
	snprintf(path, sizeof(path), "/proc/%u/net/sockstat", pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "TCP: inuse %d orphan %*d tw %d", &inuse, &tw) == 2)
			break;
	fclose(f);
	snprintf(path, sizeof(path), "/proc/%u/ns/net", pid);
	if (stat(path, &st) || (uint32_t)st.st_ino != ino)
		return false;
	return inuse == 0 && tw == 0;
}

static void list_netns(const struct ct_options *o, uint32_t ino, int fd, const struct seeding *sd,
		       struct seed_batch *b, struct inventory *inv)
{
	uint32_t mask = (1u << TCP_TIME_WAIT) | (1u << TCP_CLOSE_WAIT) | (1u << TCP_FIN_WAIT2) |
			(1u << TCP_LAST_ACK);
	struct port_report rep;
	uint64_t now, since_attach_ms;
	struct ct_tw_seed seed;

	if (sockdiag_states(mask, fd, &rep)) {
		inv->netns_failed++;
		return;
	}
	now = mono_ns();
	since_attach_ms = (now - sd->attached_ns) / 1000000ULL;
	inv->netns++;
	inv->dropped += rep.n_dropped;
	for (int i = 0; i < rep.n; i++) {
		const struct port_socket *ps = &rep.socks[i];

		if (!socket_wanted(o, ino, ps))
			continue;
		/* -p: its sockets only (a timewait socket belongs to no process) */
		if (o->pid && !inodes_have(&sd->pid_inodes, ps->inode))
			continue;
		if (port_socket_class(ps) == PORT_TIMEWAIT) {
			if (ps->state == TCP_FIN_WAIT2)
				inv->tw_fin_wait2++;
			else
				inv->timewait++;
			if (!ps->cookie) {
				inv->not_followed++;
				continue;
			}
			if (followed(ps, since_attach_ms, sd->tws_fd, sd->tws_value))
				continue;
			seed_of(ps, now, sd->cookie_ids, &seed);
			if (batch_add(b, ps->cookie, &seed))
				inv->not_followed++;
			else if (ps->expires_ms > inv->max_expires_ms)
				inv->max_expires_ms = ps->expires_ms;
		} else if (ps->state == TCP_CLOSE_WAIT) {
			inv->close_wait++;
		} else if (ps->state == TCP_FIN_WAIT2) {
			inv->fin_wait2++;
		} else if (ps->state == TCP_LAST_ACK) {
			inv->last_ack++;
		}
	}
	port_report_free(&rep);
	batch_flush(b, sd->seeds_fd, sd->left, inv);
}

struct inventory_state {
	struct ns_set ns;
	int next;		/* the next namespace to list */
	struct seeding sd;
	struct seed_batch b;
	const struct ct_options *o;
};

/* list namespaces until the deadline (0: all); 1 when some are left */
static int list_until(struct inventory *inv, uint64_t deadline)
{
	struct inventory_state *st = inv->st;
	uint64_t t0 = mono_ns();

	while (st->next < st->ns.n) {
		int i = st->next++;

		if (ns_no_tcp(st->ns.pid[i], st->ns.ino[i]))
			inv->netns++;
		else
			list_netns(st->o, st->ns.ino[i], st->ns.fd[i], &st->sd, &st->b, inv);
		close(st->ns.fd[i]);
		st->ns.fd[i] = -1;
		if (deadline && mono_ns() >= deadline)
			break;
	}
	inv->ms += (mono_ns() - t0) / 1000000ULL;
	return st->next < st->ns.n;
}

int inventory_take(const struct ct_options *o, int seeds_fd, int tws_fd, uint32_t tws_value_size,
		   bool cookie_ids, uint64_t *seeds_left, uint64_t attached_ns, uint64_t budget_ms,
		   struct inventory *inv)
{
	struct inventory_state *st = calloc(1, sizeof(*st));

	memset(inv, 0, sizeof(*inv));
	if (!st)
		return 0;
	st->sd = (struct seeding){ .seeds_fd = seeds_fd, .tws_fd = tws_fd, .cookie_ids = cookie_ids,
				   .left = seeds_left, .attached_ns = attached_ns };
	st->sd.tws_value = calloc(1, tws_value_size ? tws_value_size : 1);
	st->o = o;
	inv->st = st;
	if (!st->sd.tws_value) {
		inventory_finish(inv);
		return 0;
	}
	ns_collect(o, &st->ns);
	if (o->pid)
		inodes_read(o->pid, &st->sd.pid_inodes);
	if (list_until(inv, mono_ns() + budget_ms * 1000000ULL)) {
		inv->netns_later = st->ns.n - st->next;
		return 1;
	}
	return 0;
}

void inventory_finish(struct inventory *inv)
{
	struct inventory_state *st = inv->st;

	if (!st)
		return;
	if (st->sd.tws_value)
		list_until(inv, 0);
	for (int i = st->next; i < st->ns.n; i++)
		close(st->ns.fd[i]);
	free(st->b.keys);
	free(st->b.vals);
	free(st->sd.tws_value);
	free(st->sd.pid_inodes.v);
	free(st);
	inv->st = NULL;
}

int inventory_sweep(int seeds_fd, uint64_t *seeds_left)
{
	uint64_t key, next;
	int n = 0;
	bool first = true;

	/* deleting the current key: the next one is taken first */
	while (!bpf_map_get_next_key(seeds_fd, first ? NULL : &key, &next)) {
		if (!first && !bpf_map_delete_elem(seeds_fd, &key)) {
			__atomic_sub_fetch(seeds_left, 1, __ATOMIC_SEQ_CST);
			n++;
		}
		key = next;
		first = false;
	}
	if (!first && !bpf_map_delete_elem(seeds_fd, &key)) {
		__atomic_sub_fetch(seeds_left, 1, __ATOMIC_SEQ_CST);
		n++;
	}
	return n;
}

void inventory_print(const struct inventory *inv)
{
	int tw = inv->timewait + inv->tw_fin_wait2;

	fprintf(stderr,
		"closetrace: older than the tracer (%d namespace%s): %d TIME_WAIT, %d orphaned FIN_WAIT2, "
		"%d CLOSE_WAIT, %d FIN_WAIT2, %d LAST_ACK",
		inv->netns, inv->netns == 1 ? "" : "s", inv->timewait, inv->tw_fin_wait2,
		inv->close_wait, inv->fin_wait2, inv->last_ack);
	if (tw || inv->close_wait || inv->fin_wait2 || inv->last_ack)
		fprintf(stderr, "; their ends are reported as preexisting");
	if (inv->not_followed)
		fprintf(stderr, "; %d timewait sockets not followed (map full)", inv->not_followed);
	if (inv->netns_failed)
		fprintf(stderr, "; %d namespaces could not be listed", inv->netns_failed);
	if (inv->netns_later)
		fprintf(stderr, "; %d namespaces listed after tracing began (%llu ms in all)",
			inv->netns_later, (unsigned long long)inv->ms);
	if (inv->dropped)
		fprintf(stderr, "; %d sockets beyond the listing limit", inv->dropped);
	fputc('\n', stderr);
}
