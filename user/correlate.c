// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include <netinet/tcp.h>
#include <string.h>
#include "correlate.h"

void correlate_record(const struct correlator *c, const struct ct_record *r)
{
	struct ct_record d;

	c->emit(c->ctx, r);
	switch (r->kind) {
	case CT_REC_CLOSE:
		/*
		 * tcp_time_wait() found the table full (tcp_max_tw_buckets) and
		 * made no timewait socket: say so where the TIME_WAIT would end.
		 */
		if (!(r->flags & CT_F_TW_NOT_CREATED))
			break;
		d = *r;
		d.kind = CT_REC_TIMEWAIT;
		d.tw_end = CT_TW_NOT_CREATED;
		d.tw_ns = d.tw_sock_ns = 0;
		memset(d.state_ns, 0, sizeof(d.state_ns));
		d.visited = 0;
		c->emit(c->ctx, &d);
		break;
	case CT_REC_TIMEWAIT:
		if (!c->states)
			break;
		d = *r;
		d.kind = CT_REC_STATE;
		d.oldstate = r->tw_end == CT_TW_FIN_WAIT2_TIMEOUT ? TCP_FIN_WAIT2 : TCP_TIME_WAIT;
		d.newstate = TCP_CLOSE;
		c->emit(c->ctx, &d);
		break;
	}
}
