// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include <string.h>
#include <sys/socket.h>
#include "filter.h"

static bool port_listed(const uint16_t *list, int n, uint16_t port)
{
	for (int i = 0; i < n; i++)
		if (list[i] == port)
			return true;
	return false;
}

static bool is_v4mapped(const uint8_t *a)
{
	static const uint8_t prefix[12] = { [10] = 0xff, [11] = 0xff };

	return !memcmp(a, prefix, sizeof(prefix));
}

bool record_wanted(const struct ct_options *o, const struct ct_record *r)
{
	if (o->pid && r->pid != o->pid)
		return false;
	if (o->netns && r->netns != o->netns)
		return false;
	if (o->family) {
		bool v4 = r->family == AF_INET || is_v4mapped(r->laddr);

		if ((o->family == 4) != v4)
			return false;
	}
	if (o->n_lports && !port_listed(o->lports, o->n_lports, r->lport))
		return false;
	if (o->n_rports && !port_listed(o->rports, o->n_rports, r->rport))
		return false;
	return true;
}
