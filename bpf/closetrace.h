/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * closetrace: the record layout shared by the BPF programs and user space.
 *
 * One record per finished close, one per finished TIME_WAIT, and (only with
 * --states) one per state transition.  Fixed-width types only: this header
 * is compiled both with clang -target bpf and with the host compiler.
 */
#ifndef CLOSETRACE_H
#define CLOSETRACE_H

#ifndef __VMLINUX_H__ /* user space; BPF gets the types from vmlinux.h */
#include <linux/types.h>
#endif

#define CT_COMM_LEN 16
#define CT_NSTATES 16	  /* kernel TCP state numbers (TCP_ESTABLISHED = 1 ...) index state_ns[] */
#define CT_MAX_PORTS 16	  /* --lport / --rport list length */
#define CT_TCP_TIMEWAIT 6 /* the kernel's TCP_TIME_WAIT, used in synthesized state records */

/* record kinds */
enum ct_kind {
	CT_REC_CLOSE = 1,    /* a connection's close completed */
	CT_REC_TIMEWAIT = 2, /* a TIME_WAIT (timewait socket) ended */
	CT_REC_STATE = 3,    /* one state transition (--states) */
	CT_REC_CONNECT_FAIL = 4, /* connect() found no free 4-tuple (EADDRNOTAVAIL; --tw-reuse) */
	CT_REC_CLOSE_DEFERRED = 5, /* close() of a socket fd that other references keep open */
	CT_REC_BIND_CONFLICT = 6,  /* bind()/listen()/connect() failed with EADDRINUSE */
	/*
	 * Made in user space at the time, so that a replay shows them too:
	 * who holds a socket a close() left open, what holds a busy port,
	 * and --watch reports.
	 */
	CT_REC_HOLDER = 7,	   /* a process holding the socket of the record before */
	CT_REC_PORT_USER = 8,	   /* a socket on the port of the bind conflict before */
	CT_REC_WATCH = 9,	   /* --watch: a socket long in CLOSE_WAIT / FIN_WAIT2 */
	CT_REC_WATCH_COUNT = 10,   /* --watch: per process count of such sockets */
};

/* how the close was done (local side) or what arrived (remote side) */
enum ct_method {
	CT_M_NONE = 0,
	CT_M_CLOSE,	       /* close() of the last reference */
	CT_M_SHUTDOWN,	       /* shutdown(SHUT_WR / SHUT_RDWR) */
	CT_M_EXIT,	       /* the process exited or was killed */
	CT_M_LINGER_RESET,     /* close() with SO_LINGER {1, 0}: RST */
	CT_M_UNREAD_RESET,     /* close() with unread received data: RST */
	CT_M_LINGER_WAIT,      /* close() with SO_LINGER {1, N}: waited */
	CT_M_FIN,	       /* remote: the peer's FIN */
	CT_M_RST,	       /* remote: the peer's RST */
	CT_M_LISTENER_CLOSED,  /* never accepted; its listener closed: RST (inet_csk_listen_stop()) */
	CT_M_ABORT_ON_DATA,    /* data came after our close(): the kernel sent an RST (TCPAbortOnData) */
	CT_M__MAX,
};

/* SO_LINGER {1, N} close(): why close() returned */
enum ct_linger {
	CT_LINGER_NONE = 0,
	CT_LINGER_ACKED,   /* the peer acknowledged within the linger time */
	CT_LINGER_TIMEOUT, /* the linger time ran out first */
};

/* which syscall failed, for CT_REC_BIND_CONFLICT */
enum ct_syscall {
	CT_SYS_BIND = 1,
	CT_SYS_LISTEN,
	CT_SYS_CONNECT,
};

/* who started the close */
enum ct_initiator {
	CT_INIT_UNKNOWN = 0, /* already closing when tracing started */
	CT_INIT_LOCAL,	     /* this side sent the first FIN */
	CT_INIT_REMOTE,	     /* the peer sent the first FIN */
	CT_INIT_SIMULTANEOUS,/* both FINs crossed (CLOSING) */
	CT_INIT_LOCAL_RESET, /* this side sent an RST */
	CT_INIT_REMOTE_RESET,/* the peer sent an RST */
	CT_INIT_TIMEOUT,     /* retransmission or keepalive gave up */
	CT_INIT_NONE,	     /* never left the handshake (no close path) */
	CT_INIT__MAX,
};

/* how a TIME_WAIT ended */
enum ct_tw_end {
	CT_TW_NONE = 0,
	CT_TW_EXPIRED,		/* the timer ran out */
	CT_TW_REUSED,		/* connect() took over the 4-tuple (tcp_tw_reuse) */
	CT_TW_RESET,		/* killed by an incoming RST */
	CT_TW_SYN,		/* killed by a new SYN accepted by a listener */
	CT_TW_FIN_WAIT2_TIMEOUT,/* orphaned FIN_WAIT2: the peer never sent its FIN */
	CT_TW_NOT_CREATED,	/* the timewait table was full (tcp_max_tw_buckets) */
	CT_TW_NETNS_EXIT,	/* purged with its network namespace */
	CT_TW__MAX,
};

/* record flags */
#define CT_F_TIMEWAIT	   (1u << 0) /* close: a timewait socket was created */
#define CT_F_TW_NOT_CREATED (1u << 1) /* close: a timewait socket was due but the table was full */
#define CT_F_TW_FIN_WAIT2  (1u << 2) /* close/timewait: the timewait socket began in FIN_WAIT2 */
#define CT_F_RST_SENT	   (1u << 3) /* an RST was sent on this connection */
#define CT_F_RST_RECEIVED  (1u << 4) /* an RST was received on this connection */
#define CT_F_PREEXISTING   (1u << 5) /* first seen mid-connection (tracer started later) */
#define CT_F_REUSE_BOUND   (1u << 6) /* timewait reused: the connecting socket had bind() its port */
#define CT_F_REUSE_DELAY   (1u << 7) /* timewait reused: reuse_delay_ms is the kernel's tcp_tw_reuse_delay */
#define CT_F_END_FIN_WAIT2 (1u << 8) /* timewait: still in substate FIN_WAIT2 when it ended */
#define CT_F_EXITING	   (1u << 9) /* the closing process was exiting (do_exit() closed its files) */
#define CT_F_INCOMPLETE	   (1u << 10) /* holder / port-user: the /proc scan gave up before the end */
#define CT_F_WATCH_CLOSED  (1u << 11) /* watch: the socket finally closed */
#define CT_F_AGE_AT_LEAST  (1u << 12) /* watch: already in the state when tracing began */
#define CT_F_PASSIVE	   (1u << 13) /* accepted from a listener: the remote end is a client */
#define CT_F_ACCEPTED	   (1u << 16) /* accept() returned it: pid/comm are the accepting process */
/* timewait: the FIN_WAIT2 / TIME_WAIT split is from jiffies (within 1/HZ), see emit_tw_end() */
#define CT_F_TW_SPLIT_ESTIMATED (1u << 20)
/* close: the kernel made a timewait socket, but the tws map was full: its end is not reported */
#define CT_F_TW_UNTRACKED (1u << 21)
/*
 * timewait, with CT_F_PREEXISTING: the timewait socket's start is estimated
 * from its timer (sock_diag's idiag_expires at start); without it, its
 * durations count from the start of tracing (a lower bound)
 */
#define CT_F_AGE_ESTIMATE  (1u << 18)

/*
 * A timewait socket older than the tracer, found by the loader through
 * sock_diag at start: map tw_seeds, keyed by its cookie (idiag_cookie).
 */
struct ct_tw_seed {
	__u64 start_ns;	  /* CLOCK_MONOTONIC; estimated, or the start of tracing */
	__u64 conn_id;
	__u32 flags;	  /* CT_F_PREEXISTING, CT_F_AGE_ESTIMATE, CT_F_TW_FIN_WAIT2 */
	__u8 initiator;
	__u8 pad[3];
};

/* counters in the stats array (a global in the BPF object) */
enum ct_stat {
	CT_STAT_LOST = 0,     /* ring buffer full: record dropped */
	CT_STAT_SOCKS_FULL,   /* per-socket map full: a connection's close not reported */
	CT_STAT_TW_FULL,      /* timewait map full: a TIME_WAIT's end not reported */
	CT_STAT__MAX,
};

struct ct_record {
	__u64 ts_ns;	   /* CLOCK_MONOTONIC (bpf_ktime_get_ns) when emitted */
	__u64 conn_id;	   /* joins the records of one connection */
	__u64 state_ns[CT_NSTATES]; /* time spent in each state, by kernel state number */
	__u64 tw_ns;	   /* timewait: time in TIME_WAIT proper */
	__u64 tw_sock_ns;  /* timewait: whole life of the timewait socket */
	__u32 netns;	   /* network namespace inode number */
	__u32 pid;	   /* owner process (tgid), 0 if unknown */
	__u32 reuse_pid;   /* timewait reused: the process whose connect() took it */
	__u32 flags;	   /* CT_F_* */
	__u16 visited;	   /* bit per kernel state the connection was seen in */
	__u16 family;	   /* AF_INET or AF_INET6 */
	__u16 lport;	   /* host byte order */
	__u16 rport;	   /* host byte order */
	__u8 laddr[16];	   /* network order; IPv4 uses the first 4 bytes */
	__u8 raddr[16];
	__u8 kind;	   /* enum ct_kind */
	__u8 initiator;	   /* enum ct_initiator */
	__u8 tw_end;	   /* enum ct_tw_end */
	__u8 oldstate;	   /* state records */
	__u8 newstate;
	__u8 reuse_sysctl; /* timewait reused: net.ipv4.tcp_tw_reuse in force */
	__u8 pad[2];
	__u32 reuse_delay_ms; /* timewait reused: net.ipv4.tcp_tw_reuse_delay in force */
	__u32 bound_dev_if;   /* timewait: SO_BINDTODEVICE ifindex of the timewait socket */
	__u64 ino;	      /* socket inode (links in /proc/PID/fd), 0 if none */
	__u64 linger_ns;      /* linger-wait: the SO_LINGER time */
	__u64 age_ns;	      /* watch: time in the state; port-user TIME_WAIT: the oldest's age */
	__u64 expires_ns;     /* port-user TIME_WAIT: when the last one ends, from now */
	__u8 method;	      /* enum ct_method: the first close (local or remote) */
	__u8 app_method;      /* remote-initiated: how the app closed its side */
	__u8 exit_signal;     /* method exit: the signal that killed the process, 0 if none */
	__u8 linger;	      /* enum ct_linger */
	__u8 state;	      /* close-deferred / bind-conflict: the socket's state */
	__u8 syscall;	      /* bind-conflict: enum ct_syscall */
	__u16 pad2;
	__u32 fd;	      /* close-deferred: the fd closed */
	__u32 refs;	      /* close-deferred: references left to the open file */
	char comm[CT_COMM_LEN];
	char reuse_comm[CT_COMM_LEN];
};

/* ---- the kernel side's per-connection state (the socks map), read by --watch ---- */

struct ct_tuple {
	__u32 netns;
	__u16 family;
	__u16 lport;
	__u16 rport;
	__u16 pad;
	__u8 laddr[16];
	__u8 raddr[16];
	__u32 pad2; /* a multiple of 8 bytes, compared 8 at a time */
};

struct ct_sock {
	__u64 conn_id;
	__u64 state_ts; /* CLOCK_MONOTONIC when the current state began, 0 if unknown */
	__u64 state_ns[CT_NSTATES];
	__u64 ino;	 /* socket inode, read while a process still held the socket */
	__u64 close_ts;	 /* the application's close (for SO_LINGER waits) */
	__u64 linger_ns; /* SO_LINGER time of a waiting close() */
	struct ct_tuple t; /* --watch: filled on entering CLOSE_WAIT or FIN_WAIT2 */
	__u32 pid;
	__u32 flags;
	__u16 visited;
	__u8 initiator;
	__u8 close_pending; /* reached CLOSE; waiting for tcp_send_reset or destroy */
	__u8 method;	    /* enum ct_method of the first close */
	__u8 app_method;    /* remote-initiated: how the app closed */
	__u8 exit_signal;
	__u8 linger;	    /* enum ct_linger */
	__u8 state;	    /* current state */
	__u8 pad[7];
	char comm[CT_COMM_LEN];
};

/* the listeners map: listening port -> owner, which accepted sockets inherit */
struct ct_listener_key {
	__u32 netns;
	__u16 port;
	__u16 pad;
};

struct ct_owner {
	__u32 pid;
	char comm[CT_COMM_LEN];
};

/* ---- --summary: aggregates, kept in the kernel and rebuilt from records on replay ---- */

#define CT_HIST_SLOTS 40 /* log2 nanosecond buckets: up to ~18 minutes */

struct ct_summary {
	__u64 closes;
	__u64 by_initiator[CT_INIT__MAX];
	__u64 by_method[CT_M__MAX];	  /* local closes by method, remote by what arrived */
	__u64 close_deferred;		  /* close() calls other references kept open */
	__u64 bind_conflicts;		  /* EADDRINUSE failures */
	__u64 tw_created;	  /* closes handed to a timewait socket */
	__u64 tw_not_created;	  /* closes that found the timewait table full */
	__u64 tw_end[CT_TW__MAX]; /* TIME_WAITs ended, by how */
	__u64 rst_sent;		  /* connections on which an RST was sent */
	__u64 rst_received;
	__u64 state_hist[CT_NSTATES][CT_HIST_SLOTS]; /* time in each state, per close */
	__u64 tw_hist[CT_HIST_SLOTS];		     /* TIME_WAIT duration */
	__u64 reuse_age_hist[CT_HIST_SLOTS];	     /* timewait socket age when reused */
};

/* per owner process and per remote endpoint */
struct ct_counts {
	__u64 closes;
	__u64 local;	  /* this side sent the first FIN */
	__u64 remote;	  /* the peer did */
	__u64 resets;	  /* reset either way */
	__u64 tw_created; /* TIME_WAIT sockets this owner / endpoint left behind */
	char comm[CT_COMM_LEN];
};

struct ct_endpoint {
	__u16 family;
	__u16 port;
	__u8 addr[16];
};

#endif /* CLOSETRACE_H */
