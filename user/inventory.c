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

struct ns_set {
	uint32_t ino[INVENTORY_MAX_NETNS];
	int fd[INVENTORY_MAX_NETNS];
	int n;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* open path, and keep it if it is a namespace not in the set yet */
static void ns_add(struct ns_set *s, const char *path)
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
		ns_add(s, path);
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
			s->n = 1;
		}
		return;
	}
	snprintf(path, sizeof(path), "/proc/%d/ns/net", getpid());
	ns_add(s, path);
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

static void seed_timewait(const struct port_socket *ps, uint64_t now, int seeds_fd, int tws_fd,
			  void *tws_value, bool cookie_ids, uint64_t *left, struct inventory *inv)
{
	struct ct_tw_seed seed;
	uint64_t key = ps->cookie;

	if (!key) {
		inv->not_followed++;
		return;
	}
	/* scheduled after the programs were attached: followed already */
	if (!bpf_map_lookup_elem(tws_fd, &key, tws_value))
		return;
	seed_of(ps, now, cookie_ids, &seed);
	/* counted first: the kernel side adopts a seed as soon as it is in */
	__atomic_add_fetch(left, 1, __ATOMIC_SEQ_CST);
	if (bpf_map_update_elem(seeds_fd, &key, &seed, BPF_NOEXIST)) {
		__atomic_sub_fetch(left, 1, __ATOMIC_SEQ_CST);
		inv->not_followed++;
		return;
	}
	inv->seeded++;
}

static void list_netns(const struct ct_options *o, uint32_t ino, int fd, int seeds_fd, int tws_fd,
		       void *tws_value, bool cookie_ids, uint64_t *left, struct inventory *inv)
{
	uint32_t mask = (1u << TCP_TIME_WAIT) | (1u << TCP_CLOSE_WAIT) | (1u << TCP_FIN_WAIT2) |
			(1u << TCP_LAST_ACK);
	struct port_report rep;
	uint64_t now;

	if (sockdiag_states(mask, fd, &rep)) {
		inv->netns_failed++;
		return;
	}
	now = mono_ns();
	inv->netns++;
	inv->dropped += rep.n_dropped;
	for (int i = 0; i < rep.n; i++) {
		const struct port_socket *ps = &rep.socks[i];

		if (!socket_wanted(o, ino, ps))
			continue;
		if (port_socket_class(ps) == PORT_TIMEWAIT) {
			if (ps->state == TCP_FIN_WAIT2)
				inv->tw_fin_wait2++;
			else
				inv->timewait++;
			/* -p: a timewait socket has no process, and would not be reported */
			if (o->pid)
				inv->not_followed++;
			else
				seed_timewait(ps, now, seeds_fd, tws_fd, tws_value, cookie_ids, left, inv);
		} else if (ps->state == TCP_CLOSE_WAIT) {
			inv->close_wait++;
		} else if (ps->state == TCP_FIN_WAIT2) {
			inv->fin_wait2++;
		} else if (ps->state == TCP_LAST_ACK) {
			inv->last_ack++;
		}
	}
	port_report_free(&rep);
}

void inventory_take(const struct ct_options *o, int seeds_fd, int tws_fd, uint32_t tws_value_size,
		    bool cookie_ids, uint64_t *seeds_left, struct inventory *inv)
{
	uint64_t t0 = mono_ns();
	struct ns_set *s = calloc(1, sizeof(*s));
	void *tws_value = calloc(1, tws_value_size ? tws_value_size : 1);

	memset(inv, 0, sizeof(*inv));
	if (!s || !tws_value)
		goto out;
	ns_collect(o, s);
	for (int i = 0; i < s->n; i++) {
		list_netns(o, s->ino[i], s->fd[i], seeds_fd, tws_fd, tws_value, cookie_ids, seeds_left,
			   inv);
		close(s->fd[i]);
	}
out:
	free(tws_value);
	free(s);
	inv->ms = (mono_ns() - t0) / 1000000ULL;
}

void inventory_print(const struct inventory *inv, bool pid_filter)
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
		fprintf(stderr, "; %d timewait sockets not followed%s", inv->not_followed,
			pid_filter ? " (they belong to no process: -p)" : " (map full)");
	if (inv->netns_failed)
		fprintf(stderr, "; %d namespaces could not be listed", inv->netns_failed);
	if (inv->dropped)
		fprintf(stderr, "; %d sockets beyond the listing limit", inv->dropped);
	fputc('\n', stderr);
}
