/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Which TCP sockets use a local port right now, asked of NETLINK_SOCK_DIAG. */
#ifndef CT_SOCKDIAG_H
#define CT_SOCKDIAG_H

#include <stdint.h>

/* at most this many sockets are kept in a report; the rest are only counted */
#define SOCKDIAG_MAX_SOCKETS 100000
/* TCP_TIMEWAIT_LEN (include/net/tcp.h): how long TIME_WAIT lasts */
#define SOCKDIAG_TIMEWAIT_LEN_MS 60000

/*
 * The state inet_diag reports for a bound-only socket (bind() done, no
 * listen() nor connect()): TCP_CLOSE, found by the bind hash walk in
 * tcp_diag_dump() when TCPF_BOUND_INACTIVE is asked for (Linux 6.8+).
 * No other socket in a dump has state TCP_CLOSE.
 */
#define SOCKDIAG_STATE_BOUND 7 /* TCP_CLOSE */

/* idiag_timer values (tcp_diag.c, inet_diag.c) */
#define SOCKDIAG_TIMER_NONE 0
#define SOCKDIAG_TIMER_RETRANS 1 /* also: request sockets (SYN_RECV) */
#define SOCKDIAG_TIMER_KEEPALIVE 2
#define SOCKDIAG_TIMER_TIMEWAIT 3 /* set only by tcp_twsk_diag_fill() */
#define SOCKDIAG_TIMER_PROBE0 4

struct port_socket {
	uint8_t family;		/* AF_INET or AF_INET6 */
	uint8_t state;		/* TCP_* (netinet/tcp.h); timewait sockets: tw_substate */
	uint8_t timer;		/* SOCKDIAG_TIMER_* */
	uint16_t lport, rport;	/* host order */
	uint8_t laddr[16], raddr[16]; /* AF_INET: the first 4 bytes */
	uint64_t inode;		/* 0: no file (timewait, request or orphaned socket) */
	uint32_t uid;
	/* idiag_expires: ms until the timer fires; for a timewait socket, until it goes */
	uint32_t expires_ms;
	uint64_t cookie;	/* idiag_cookie: the socket's cookie (sock_gen_cookie()) */
};

enum port_class {
	PORT_LISTEN,
	PORT_ESTABLISHED,
	PORT_TIMEWAIT,	/* TIME_WAIT, or an orphan's FIN_WAIT2 kept as a timewait socket */
	PORT_OTHER,	/* bound-only, SYN_SENT, SYN_RECV, closing states, CLOSE_WAIT */
};

struct port_report {
	uint16_t port;		/* 0: any port (sockdiag_states()) */
	uint32_t states;	/* TCPF_* mask asked for, 0 = all */
	int n;			/* entries in socks */
	struct port_socket *socks; /* malloc'd, in the kernel's dump order */
	/* counts cover every socket seen, also those beyond SOCKDIAG_MAX_SOCKETS */
	int n_listen, n_established, n_timewait, n_other;
	int n_bound;		/* of n_other: bound-only sockets (SOCKDIAG_STATE_BOUND) */
	int n_tw_fin_wait2;	/* of n_timewait: timewait sockets with tw_substate FIN_WAIT2 */
	int n_dropped;		/* seen but not kept in socks */
	/*
	 * Over the TIME_WAIT-substate sockets only (0 when there are none):
	 * the least remaining time, for the oldest one's age.
	 */
	uint32_t tw_min_expires_ms;
	/* over all timewait sockets (0 when none): when the last one goes */
	uint32_t tw_max_expires_ms;
};

enum port_class port_socket_class(const struct port_socket *s);

/*
 * Age of the oldest TIME_WAIT socket, TCP_TIMEWAIT_LEN minus its remaining
 * time, or -1 when there is none.
 */
int64_t port_report_tw_oldest_age_ms(const struct port_report *r);

/*
 * TCP sockets (IPv4 and IPv6, any state) whose local port is port, in the
 * caller's network namespace.  Returns 0 or -errno; on success free out
 * with port_report_free().
 */
int sockdiag_port(uint16_t port, struct port_report *out);

/*
 * The same in another network namespace: netns_fd is an open
 * /proc/PID/ns/net (needs CAP_SYS_ADMIN); a negative netns_fd means the
 * caller's.  Switches only the calling thread, and only while it opens the
 * netlink socket.
 */
int sockdiag_port_netns(uint16_t port, int netns_fd, struct port_report *out);

/*
 * TCP sockets in the states of state_mask (1 << TCP_*), any port, in the
 * namespace of netns_fd (negative: the caller's).  Same report and limits.
 */
int sockdiag_states(uint32_t state_mask, int netns_fd, struct port_report *out);

void port_report_free(struct port_report *r);

#endif
