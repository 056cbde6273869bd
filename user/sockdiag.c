// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Which TCP sockets use a local port: one NETLINK_SOCK_DIAG dump per
 * address family, filtered in the kernel by inet_diag bytecode.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include "sockdiag.h"

#define RECV_BUF_LEN 65536
#define RECV_TIMEOUT_S 5
/* TCP_BOUND_INACTIVE, a pseudo-state for inet_diag (include/net/tcp_states.h) */
#define TCP_BOUND_INACTIVE_BIT 13

/*
 * "sport == port": an INET_DIAG_BC_S_EQ op followed by an op whose "no"
 * holds the port (host order: inet_diag_bc_run() compares it with
 * entry->sport, which is sk_num).  A program accepts an entry when its
 * length runs out exactly; a jump to len + 4 rejects it, the way ss does.
 */
struct port_filter {
	struct nlattr nla;
	struct inet_diag_bc_op op[2];
};

struct diag_request {
	struct nlmsghdr nlh;
	struct inet_diag_req_v2 req;
	struct port_filter bc;
};

_Static_assert(sizeof(struct diag_request) ==
	       NLMSG_LENGTH(sizeof(struct inet_diag_req_v2)) + sizeof(struct port_filter),
	       "the bytecode attribute must follow the request without padding");

static void build_request(struct diag_request *m, uint8_t family, uint16_t port, uint32_t states,
			  uint32_t seq)
{
	memset(m, 0, sizeof(*m));
	m->nlh.nlmsg_len = port ? sizeof(*m) : NLMSG_LENGTH(sizeof(m->req));
	m->nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	m->nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	m->nlh.nlmsg_seq = seq;
	m->req.sdiag_family = family;
	m->req.sdiag_protocol = IPPROTO_TCP;
	/* every state, TCPF_BOUND_INACTIVE included; older kernels ignore unknown bits */
	m->req.idiag_states = states ? states : ~0U;
	if (!port)
		return; /* any port: no bytecode */
	/*
	 * tcp_diag_dump() also compares id.idiag_sport for the listening and
	 * established walks, but not for the bound-only walk: the bytecode
	 * is what filters everywhere.
	 */
	m->req.id.idiag_sport = htons(port);
	m->bc.nla.nla_type = INET_DIAG_REQ_BYTECODE;
	m->bc.nla.nla_len = sizeof(m->bc);
	m->bc.op[0].code = INET_DIAG_BC_S_EQ;
	m->bc.op[0].yes = sizeof(m->bc.op);
	m->bc.op[0].no = sizeof(m->bc.op) + 4;
	m->bc.op[1].no = port;
}

static int diag_socket(void)
{
	struct timeval tv = { .tv_sec = RECV_TIMEOUT_S };
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);

	if (fd < 0)
		return -errno;
	/* a dump never stalls, but the tracer must not hang on one if it did */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/*
 * A netlink socket answers for the network namespace it was created in
 * (sock_net(skb->sk) in tcp_diag_dump()), so entering the namespace just
 * for socket() is enough.  setns(CLONE_NEWNET) changes the calling thread only.
 */
static int diag_socket_in(int netns_fd)
{
	int self, fd, err;

	if (netns_fd < 0)
		return diag_socket();
	self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return -errno;
	if (setns(netns_fd, CLONE_NEWNET)) {
		err = -errno;
		close(self);
		return err;
	}
	fd = diag_socket();
	if (setns(self, CLONE_NEWNET)) {
		/* cannot happen with the rights we just used; do not answer from the wrong place */
		err = -errno;
		if (fd >= 0)
			close(fd);
		fd = err;
	}
	close(self);
	return fd;
}

static int send_request(int fd, uint8_t family, uint16_t port, uint32_t states, uint32_t seq)
{
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	struct diag_request m;
	ssize_t n;

	build_request(&m, family, port, states, seq);
	do {
		n = sendto(fd, &m, m.nlh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel));
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == (ssize_t)m.nlh.nlmsg_len ? 0 : -EIO;
}

static ssize_t recv_part(int fd, void *buf, size_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct sockaddr_nl from;
	struct msghdr msg = {
		.msg_name = &from,
		.msg_namelen = sizeof(from),
		.msg_iov = &iov,
		.msg_iovlen = 1,
	};
	ssize_t n;

	do {
		n = recvmsg(fd, &msg, 0);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
	if (msg.msg_flags & MSG_TRUNC)
		return -EMSGSIZE;
	if (n == 0)
		return -EIO;
	return n;
}

enum port_class port_socket_class(const struct port_socket *s)
{
	/* the state of a timewait socket is its tw_substate (tcp_twsk_diag_fill()) */
	if (s->timer == SOCKDIAG_TIMER_TIMEWAIT || s->state == TCP_TIME_WAIT)
		return PORT_TIMEWAIT;
	if (s->state == TCP_LISTEN)
		return PORT_LISTEN;
	if (s->state == TCP_ESTABLISHED)
		return PORT_ESTABLISHED;
	return PORT_OTHER;
}

int64_t port_report_tw_oldest_age_ms(const struct port_report *r)
{
	if (r->n_timewait - r->n_tw_fin_wait2 <= 0)
		return -1;
	/*
	 * tcp_time_wait() arms TIME_WAIT for TCP_TIMEWAIT_LEN; a retransmitted
	 * FIN re-arms it (tcp_timewait_state_process()), so this is the time
	 * since the last (re)arm, and HZ-granular.
	 */
	if (r->tw_min_expires_ms >= SOCKDIAG_TIMEWAIT_LEN_MS)
		return 0;
	return SOCKDIAG_TIMEWAIT_LEN_MS - r->tw_min_expires_ms;
}

static void count_socket(struct port_report *r, const struct port_socket *s)
{
	switch (port_socket_class(s)) {
	case PORT_LISTEN:
		r->n_listen++;
		break;
	case PORT_ESTABLISHED:
		r->n_established++;
		break;
	case PORT_TIMEWAIT:
		if (r->n_timewait == 0 || s->expires_ms > r->tw_max_expires_ms)
			r->tw_max_expires_ms = s->expires_ms;
		if (s->state == TCP_FIN_WAIT2) {
			r->n_tw_fin_wait2++;
		} else if (r->n_timewait == r->n_tw_fin_wait2 ||
			   s->expires_ms < r->tw_min_expires_ms) {
			/* first TIME_WAIT proper, or an older one */
			r->tw_min_expires_ms = s->expires_ms;
		}
		r->n_timewait++;
		break;
	case PORT_OTHER:
		if (s->state == SOCKDIAG_STATE_BOUND)
			r->n_bound++;
		r->n_other++;
		break;
	}
}

static int keep_socket(struct port_report *r, int *cap, const struct port_socket *s)
{
	if (r->n >= SOCKDIAG_MAX_SOCKETS) {
		r->n_dropped++;
		return 0;
	}
	if (r->n == *cap) {
		int ncap = *cap ? *cap * 2 : 64;
		struct port_socket *p;

		if (ncap > SOCKDIAG_MAX_SOCKETS)
			ncap = SOCKDIAG_MAX_SOCKETS;
		p = realloc(r->socks, ncap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		r->socks = p;
		*cap = ncap;
	}
	r->socks[r->n++] = *s;
	return 0;
}

static int add_message(struct port_report *r, int *cap, const struct nlmsghdr *nlh)
{
	const struct inet_diag_msg *m = NLMSG_DATA(nlh);
	struct port_socket s = { 0 };

	if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
		return 0;
	if (m->idiag_family != AF_INET && m->idiag_family != AF_INET6)
		return 0;
	s.lport = ntohs(m->id.idiag_sport);
	/* the kernel filtered already; this guards against a kernel that ignored the bytecode */
	if (r->port && s.lport != r->port)
		return 0;
	s.family = m->idiag_family;
	s.state = m->idiag_state;
	s.timer = m->idiag_timer;
	s.rport = ntohs(m->id.idiag_dport);
	memcpy(s.laddr, m->id.idiag_src, m->idiag_family == AF_INET ? 4 : 16);
	memcpy(s.raddr, m->id.idiag_dst, m->idiag_family == AF_INET ? 4 : 16);
	s.inode = m->idiag_inode;
	s.uid = m->idiag_uid;
	s.expires_ms = m->idiag_expires;
	s.cookie = (uint64_t)m->id.idiag_cookie[1] << 32 | m->id.idiag_cookie[0];
	count_socket(r, &s);
	return keep_socket(r, cap, &s);
}

/* 1: the dump is over, 0: more parts follow, <0: -errno */
static int parse_part(struct port_report *r, int *cap, const void *buf, ssize_t len, uint32_t seq)
{
	const struct nlmsghdr *nlh;
	int left = (int)len;
	int err;

	for (nlh = buf; NLMSG_OK(nlh, left); nlh = NLMSG_NEXT(nlh, left)) {
		if (nlh->nlmsg_seq != seq)
			continue;
		if (nlh->nlmsg_type == NLMSG_DONE) {
			/* netlink_dump_done() puts the dump's final status here */
			if (nlh->nlmsg_len >= NLMSG_LENGTH(sizeof(int)) &&
			    *(const int *)NLMSG_DATA(nlh) < 0)
				return *(const int *)NLMSG_DATA(nlh);
			return 1;
		}
		if (nlh->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = NLMSG_DATA(nlh);

			if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
				return -EIO;
			/* e.g. -ENOENT: no inet_diag/tcp_diag, -EINVAL: bytecode refused */
			return e->error ? e->error : 1;
		}
		if (nlh->nlmsg_type != SOCK_DIAG_BY_FAMILY)
			continue;
		err = add_message(r, cap, nlh);
		if (err)
			return err;
	}
	return 0;
}

static int dump_family(int fd, uint8_t family, struct port_report *r, int *cap, void *buf)
{
	static uint32_t seq_gen;
	uint32_t seq = (uint32_t)getpid() ^
		       (__atomic_add_fetch(&seq_gen, 1, __ATOMIC_RELAXED) << 16) ^ family;
	ssize_t n;
	int err;

	err = send_request(fd, family, r->port, r->states, seq);
	if (err)
		return err;
	do {
		n = recv_part(fd, buf, RECV_BUF_LEN);
		if (n < 0)
			return (int)n;
		err = parse_part(r, cap, buf, n, seq);
	} while (err == 0);
	return err < 0 ? err : 0;
}

static int dump(uint16_t port, uint32_t states, int netns_fd, struct port_report *out)
{
	static const uint8_t families[] = { AF_INET, AF_INET6 };
	void *buf;
	int fd, err = 0, cap = 0;

	memset(out, 0, sizeof(*out));
	out->port = port;
	out->states = states;
	buf = malloc(RECV_BUF_LEN);
	if (!buf)
		return -ENOMEM;
	fd = diag_socket_in(netns_fd);
	if (fd < 0) {
		free(buf);
		return fd;
	}
	for (size_t i = 0; i < sizeof(families) && !err; i++) {
		err = dump_family(fd, families[i], out, &cap, buf);
		/* a kernel without IPv6 has no AF_INET6 handler: nothing to report there */
		if (err == -ENOENT && families[i] == AF_INET6)
			err = 0;
	}
	close(fd);
	free(buf);
	if (err)
		port_report_free(out);
	return err;
}

int sockdiag_port_netns(uint16_t port, int netns_fd, struct port_report *out)
{
	if (!port) {
		memset(out, 0, sizeof(*out));
		return -EINVAL;
	}
	return dump(port, 0, netns_fd, out);
}

int sockdiag_states(uint32_t state_mask, int netns_fd, struct port_report *out)
{
	return dump(0, state_mask, netns_fd, out);
}

int sockdiag_port(uint16_t port, struct port_report *out)
{
	return sockdiag_port_netns(port, -1, out);
}

void port_report_free(struct port_report *r)
{
	uint16_t port = r->port;

	free(r->socks);
	memset(r, 0, sizeof(*r));
	r->port = port;
}
