// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Command-line options, argp style (as libbpf-tools). */
#include <argp.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "options.h"

#define CT_VERSION "0.1.0"

enum {
	OPT_LPORT = 1001,
	OPT_RPORT,
	OPT_JSON,
	OPT_STATES,
	OPT_NETNS,
	OPT_CLASSIC_TP,
	OPT_VERSION,
	OPT_PRINT,
	OPT_ROTATE,
	OPT_ROTATE_COUNT,
	OPT_FILE_MODE,
	OPT_SUMMARY,
	OPT_TOP,
	OPT_TW_REUSE,
	OPT_NO_SYSCALLS,
	OPT_WATCH,
	OPT_MAX_TIMEWAIT,
	OPT_OLD_KERNEL,
	OPT_MAX_SOCKETS,
};

static const char doc[] =
	"Trace TCP connection closes: who closed, how long each closing state and\n"
	"TIME_WAIT lasted, and how TIME_WAIT ended.\n"
	"\v"
	"EXAMPLES:\n"
	"    closetrace                  # every TCP close on the host, as a table\n"
	"    closetrace -p 1234          # connections owned by process 1234\n"
	"    closetrace --lport 80,443   # connections on local ports 80 or 443\n"
	"    closetrace --json -d 10     # JSON lines for 10 seconds\n"
	"    closetrace --states -T      # every transition, TIME_WAIT included\n"
	"    closetrace -w trace.ct       # record (compressed) for later\n"
	"    closetrace -r trace.ct --json  # replay a recording, no root needed\n"
	"    closetrace --summary -d 30  # aggregates: who closes, how long, TIME_WAIT ends\n"
	"    closetrace --tw-reuse       # check every TIME_WAIT reuse against the sysctls\n"
	"\n"
	"OTHER COMMANDS:\n"
	"    closetrace why-busy 8080    # what holds a local port now\n"
	"    closetrace features         # what this kernel offers, probed\n";

static const char args_doc[] = "";

static const struct argp_option option_table[] = {
	{ NULL, 0, NULL, 0, "Filters:", 1 },
	{ "pid", 'p', "PID", 0, "Only connections owned by this process", 1 },
	{ "ipv4", '4', NULL, 0, "Only IPv4 (and v4-mapped IPv6)", 1 },
	{ "ipv6", '6', NULL, 0, "Only IPv6 (not v4-mapped)", 1 },
	{ "lport", OPT_LPORT, "PORTS", 0, "Only these local ports (comma list, up to 16)", 1 },
	{ "rport", OPT_RPORT, "PORTS", 0, "Only these remote ports (comma list, up to 16)", 1 },
	{ "netns", OPT_NETNS, "INODE", 0, "Only this network namespace (inode, as in ls -L -i /proc/PID/ns/net)", 1 },
	{ NULL, 0, NULL, 0, "Output:", 2 },
	{ "json", OPT_JSON, NULL, 0, "One JSON object per line", 2 },
	{ "states", OPT_STATES, NULL, 0, "Also print every state transition", 2 },
	{ "timestamp", 'T', NULL, 0, "Include a time column (table output)", 2 },
	{ "summary", OPT_SUMMARY, NULL, 0, "Aggregate in the kernel; print a summary at exit", 2 },
	{ "interval", 'i', "SECONDS", 0, "With --summary: print the (cumulative) summary this often", 2 },
	{ "top", OPT_TOP, "N", 0, "Rows in the summary's top tables (default 10)", 2 },
	{ "tw-reuse", OPT_TW_REUSE, NULL, 0,
	  "Check every TIME_WAIT reuse against tcp_tw_reuse and its delay", 2 },
	{ "watch", OPT_WATCH, "SECONDS", 0,
	  "Report sockets in CLOSE_WAIT or FIN_WAIT2 longer than this (and when they close)", 2 },
	{ "no-syscalls", OPT_NO_SYSCALLS, NULL, 0,
	  "Do not trace close()/bind()/listen()/connect()/accept(): no close-deferred or bind-conflict "
	  "events, accepted sockets keep their listener's owner until closed", 2 },
	{ NULL, 0, NULL, 0, "Recording:", 3 },
	{ "write", 'w', "FILE", 0, "Record to FILE (- for stdout) instead of printing", 3 },
	{ "read", 'r', "FILE", 0, "Replay a recording (no root or BPF needed)", 3 },
	{ "print", OPT_PRINT, NULL, 0, "With -w: print as well as record", 3 },
	{ "rotate", OPT_ROTATE, "SIZE", 0, "With -w: start a new file past SIZE (K, M, G)", 3 },
	{ "rotate-count", OPT_ROTATE_COUNT, "N", 0, "With --rotate: keep N old files (default 5)", 3 },
	{ "file-mode", OPT_FILE_MODE, "MODE", 0, "With -w: permissions of the file (octal, default 0600)", 3 },
	{ NULL, 0, NULL, 0, "Run:", 4 },
	{ "duration", 'd', "SECONDS", 0, "Stop after this many seconds", 4 },
	{ "verbose", 'v', NULL, 0, "Print libbpf debug output and start-up timings", 4 },
	{ "max-sockets", OPT_MAX_SOCKETS, "N", 0,
	  "Connections tracked at once (default 65536; ~260 bytes of kernel memory each)", 4 },
	{ "max-timewait", OPT_MAX_TIMEWAIT, "N", 0,
	  "TIME_WAIT sockets tracked at once (default 2 x tcp_max_tw_buckets, at least 262144)", 4 },
	{ "classic-tracepoints", OPT_CLASSIC_TP, NULL, 0,
	  "Attach classic tracepoints instead of BTF ones (diagnostic)", 4 },
	{ "old-kernel", OPT_OLD_KERNEL, NULL, 0,
	  "Take the paths of a kernel without the optional BPF features, as Linux 5.10 (diagnostic)", 4 },
	{ "version", OPT_VERSION, NULL, 0, "Print the version and exit", 4 },
	{ "help", 'h', NULL, 0, "Show this help", 4 },
	{},
};

struct parse_state {
	struct ct_options *opts;
	int exit_ok;
};

/* one-line error, no usage hint: the caller exits non-zero */
#define fail(...)                                            \
	do {                                                 \
		fprintf(stderr, "closetrace: " __VA_ARGS__); \
		fputc('\n', stderr);                         \
		return EINVAL;                               \
	} while (0)

int parse_port_list(const char *s, uint16_t *ports, int max, char *err, size_t errlen)
{
	int n = 0;
	const char *p = s;

	if (!*s) {
		snprintf(err, errlen, "empty port list");
		return -1;
	}
	while (*p) {
		char *end;
		long v;

		if (*p < '0' || *p > '9') {
			snprintf(err, errlen, "invalid port list '%s'", s);
			return -1;
		}
		errno = 0;
		v = strtol(p, &end, 10);
		if (errno || v < 1 || v > 65535) {
			snprintf(err, errlen, "port out of range (1-65535) in '%s'", s);
			return -1;
		}
		if (*end != ',' && *end != '\0') {
			snprintf(err, errlen, "invalid port list '%s'", s);
			return -1;
		}
		if (n == max) {
			snprintf(err, errlen, "too many ports in '%s' (at most %d)", s, max);
			return -1;
		}
		ports[n++] = (uint16_t)v;
		p = end;
		if (*p == ',') {
			p++;
			if (!*p) {
				snprintf(err, errlen, "invalid port list '%s'", s);
				return -1;
			}
		}
	}
	return n;
}

int64_t parse_size(const char *s)
{
	char *end;
	unsigned long long v;
	int shift = 0;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	}
	if (*end || v == 0 || v > (1ULL << (62 - shift)))
		return -1;
	return (int64_t)(v << shift);
}

static double parse_seconds(const char *arg)
{
	char *end;
	double d = strtod(arg, &end);

	if (*end || end == arg || !(d > 0) || d > 1e9)
		return -1;
	return d;
}

/* a kernel table size (--max-sockets, --max-timewait): 1024 to 2^24, 0 if invalid */
static uint32_t parse_table_size(const char *arg)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < 1024 || v > (1L << 24))
		return 0;
	return (uint32_t)v;
}

static error_t parse_opt(int key, char *arg, struct argp_state *state)
{
	struct parse_state *ps = state->input;
	struct ct_options *o = ps->opts;
	char err[128];
	char *end;
	long v;

	switch (key) {
	case 'p':
		errno = 0;
		v = strtol(arg, &end, 10);
		if (errno || *end || v < 1 || v > INT_MAX)
			fail("invalid PID '%s'", arg);
		o->pid = (uint32_t)v;
		break;
	case OPT_NETNS:
		errno = 0;
		v = strtol(arg, &end, 10);
		if (errno || *end || v < 1 || v > UINT32_MAX)
			fail("invalid network namespace inode '%s'", arg);
		o->netns = (uint32_t)v;
		break;
	case '4':
	case '6':
		if (o->family && o->family != key - '0')
			fail("-4 and -6 exclude each other");
		o->family = key - '0';
		break;
	case OPT_LPORT:
		o->n_lports = parse_port_list(arg, o->lports, CT_MAX_PORTS, err, sizeof(err));
		if (o->n_lports < 0)
			fail("--lport: %s", err);
		break;
	case OPT_RPORT:
		o->n_rports = parse_port_list(arg, o->rports, CT_MAX_PORTS, err, sizeof(err));
		if (o->n_rports < 0)
			fail("--rport: %s", err);
		break;
	case 'd':
		o->duration = parse_seconds(arg);
		if (o->duration < 0)
			fail("invalid duration '%s' (seconds, > 0)", arg);
		break;
	case 'i':
		o->interval = parse_seconds(arg);
		if (o->interval < 0)
			fail("invalid interval '%s' (seconds, > 0)", arg);
		break;
	case 'w':
		o->write_path = arg;
		break;
	case 'r':
		o->read_path = arg;
		break;
	case OPT_PRINT:
		o->print = true;
		break;
	case OPT_ROTATE: {
		int64_t sz = parse_size(arg);

		if (sz < 1024)
			fail("invalid --rotate size '%s' (at least 1K; K, M, G suffixes)", arg);
		o->rotate_size = sz;
		break;
	}
	case OPT_ROTATE_COUNT:
		errno = 0;
		v = strtol(arg, &end, 10);
		if (errno || *end || v < 0 || v > 1000)
			fail("invalid --rotate-count '%s' (0-1000)", arg);
		o->rotate_count = (unsigned int)v;
		break;
	case OPT_FILE_MODE:
		errno = 0;
		v = strtol(arg, &end, 8);
		if (errno || *end || v < 0 || v > 0777 || end == arg)
			fail("invalid --file-mode '%s' (octal, e.g. 0640)", arg);
		o->file_mode = (unsigned int)v;
		break;
	case OPT_SUMMARY:
		o->summary = true;
		break;
	case OPT_TOP:
		errno = 0;
		v = strtol(arg, &end, 10);
		if (errno || *end || v < 1 || v > 100000)
			fail("invalid --top '%s' (1-100000)", arg);
		o->top = (int)v;
		break;
	case OPT_TW_REUSE:
		o->tw_reuse = true;
		break;
	case OPT_NO_SYSCALLS:
		o->no_syscalls = true;
		break;
	case OPT_MAX_TIMEWAIT:
		o->max_timewait = parse_table_size(arg);
		if (!o->max_timewait)
			fail("invalid --max-timewait '%s' (1024-16777216)", arg);
		break;
	case OPT_MAX_SOCKETS:
		o->max_sockets = parse_table_size(arg);
		if (!o->max_sockets)
			fail("invalid --max-sockets '%s' (1024-16777216)", arg);
		break;
	case OPT_WATCH:
		o->watch = parse_seconds(arg);
		if (o->watch < 0)
			fail("invalid --watch threshold '%s' (seconds, > 0)", arg);
		break;
	case ARGP_KEY_END:
		if (o->read_path && o->write_path)
			fail("-r and -w exclude each other");
		if ((o->rotate_size || o->print) && !o->write_path)
			fail("--rotate and --print go with -w");
		if (o->rotate_size && o->write_path && !strcmp(o->write_path, "-"))
			fail("--rotate needs a file, not stdout");
		if (o->print && o->write_path && !strcmp(o->write_path, "-"))
			fail("--print cannot share stdout with -w -");
		if (o->interval && !o->summary)
			fail("-i goes with --summary");
		if (o->tw_reuse && o->summary)
			fail("--tw-reuse and --summary exclude each other");
		if (o->read_path && (o->duration || o->classic_tp || o->old_kernel))
			fail("-d, --classic-tracepoints and --old-kernel do not apply to -r");
		break;
	case OPT_JSON:
		o->json = true;
		break;
	case OPT_STATES:
		o->states = true;
		break;
	case 'T':
		o->timestamps = true;
		break;
	case 'v':
		o->verbose = true;
		break;
	case OPT_CLASSIC_TP:
		o->classic_tp = true;
		break;
	case OPT_OLD_KERNEL:
		o->old_kernel = true;
		break;
	case OPT_VERSION:
		printf("closetrace %s\n", CT_VERSION);
		ps->exit_ok = 1;
		break;
	case 'h':
		argp_state_help(state, stdout, ARGP_HELP_STD_HELP);
		ps->exit_ok = 1;
		break;
	case ARGP_KEY_ARG:
		fail("unexpected argument '%s'", arg);
		break;
	default:
		return ARGP_ERR_UNKNOWN;
	}
	return 0;
}

int options_parse(int argc, char **argv, struct ct_options *opts)
{
	static const struct argp argp = {
		.options = option_table,
		.parser = parse_opt,
		.args_doc = args_doc,
		.doc = doc,
	};
	struct parse_state ps = { .opts = opts };

	memset(opts, 0, sizeof(*opts));
	opts->file_mode = 0600;
	opts->rotate_count = 5;
	opts->top = 10;
	opts->argc = argc;
	opts->argv = argv;
	/* no exit from inside argp: errors come back here (unit-testable) */
	if (argp_parse(&argp, argc, argv, ARGP_NO_HELP | ARGP_NO_EXIT, NULL, &ps))
		return -1;
	return ps.exit_ok ? 1 : 0;
}
