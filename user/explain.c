// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "explain.h"
#include "holders.h"
#include "procfs.h"
#include "sockdiag.h"

#define SCAN_BUDGET_MS 200 /* a /proc scan must not stall the event loop */
#define MAX_HOLDERS 64
#define MAX_PORT_USERS 32

static void holder_record(struct ct_record *d, const struct holder *h)
{
	d->pid = h->pid;
	d->fd = h->fd;
	memset(d->comm, 0, sizeof(d->comm));
	memcpy(d->comm, h->comm, strnlen(h->comm, sizeof(h->comm)));
}

void explain_close_deferred(const struct ct_record *r, explain_emit_fn emit, void *ctx)
{
	struct holder_scan scan = {};
	struct ct_record d = *r;
	uint64_t ino = r->ino;
	int n = 0;

	d.kind = CT_REC_HOLDER;
	d.flags = 0;
	if (ino && !holders_find(&ino, 1, MAX_HOLDERS, SCAN_BUDGET_MS, &scan)) {
		const struct holder *h = holders_of(&scan, ino, &n);

		if (scan.gave_up)
			d.flags |= CT_F_INCOMPLETE;
		for (int i = 0; i < n; i++) {
			holder_record(&d, &h[i]);
			emit(ctx, &d);
		}
	}
	if (!n) {
		/* gone meanwhile, or not visible to us: say so rather than nothing */
		d.pid = 0;
		d.fd = 0;
		memset(d.comm, 0, sizeof(d.comm));
		emit(ctx, &d);
	}
	holder_scan_free(&scan);
}

static void port_user_record(struct ct_record *d, const struct port_socket *s)
{
	d->family = s->family;
	d->state = s->state;
	d->lport = s->lport;
	d->rport = s->rport;
	memcpy(d->laddr, s->laddr, 16);
	memcpy(d->raddr, s->raddr, 16);
	d->ino = s->inode;
	d->pid = 0;
	d->fd = 0;
	memset(d->comm, 0, sizeof(d->comm));
}

void explain_bind_conflict(const struct ct_record *r, explain_emit_fn emit, void *ctx)
{
	struct port_report rep = {};
	struct holder_scan scan = {};
	uint64_t inodes[MAX_PORT_USERS];
	struct ct_record d = *r;
	int nsfd, n_ino = 0, shown = 0;

	/*
	 * Ask in the namespace of the failure: through the failing process if
	 * it is still there, else any other way into that namespace.
	 */
	nsfd = netns_open(r->netns, r->pid);
	if (nsfd < 0)
		return;
	if (sockdiag_port_netns(r->lport, nsfd, &rep)) {
		close(nsfd);
		return;
	}
	close(nsfd);
	for (int i = 0; i < rep.n && n_ino < MAX_PORT_USERS; i++)
		if (rep.socks[i].inode)
			inodes[n_ino++] = rep.socks[i].inode;
	if (n_ino)
		holders_find(inodes, n_ino, MAX_HOLDERS, SCAN_BUDGET_MS, &scan);

	d.kind = CT_REC_PORT_USER;
	d.conn_id = 0;
	for (int i = 0; i < rep.n && shown < MAX_PORT_USERS; i++) {
		const struct port_socket *s = &rep.socks[i];
		const struct holder *h;
		int nh = 0;

		if (port_socket_class(s) == PORT_TIMEWAIT)
			continue;
		port_user_record(&d, s);
		d.flags = scan.gave_up ? CT_F_INCOMPLETE : 0;
		h = s->inode && scan.h ? holders_of(&scan, s->inode, &nh) : NULL;
		if (h)
			holder_record(&d, h); /* the first owner; CT_REC_HOLDER lists all for deferred closes */
		emit(ctx, &d);
		shown++;
	}
	if (rep.n_timewait) {
		int64_t oldest = port_report_tw_oldest_age_ms(&rep);

		memset(&d, 0, sizeof(d));
		d.kind = CT_REC_PORT_USER;
		d.ts_ns = r->ts_ns;
		d.netns = r->netns;
		d.family = r->family;
		d.lport = r->lport;
		memcpy(d.laddr, r->laddr, 16);
		d.state = TCP_TIME_WAIT;
		d.refs = rep.n_timewait;
		d.age_ns = oldest > 0 ? (uint64_t)oldest * 1000000ULL : 0;
		d.expires_ns = (uint64_t)rep.tw_max_expires_ms * 1000000ULL;
		emit(ctx, &d);
	}
	holder_scan_free(&scan);
	port_report_free(&rep);
}
