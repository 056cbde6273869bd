/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Recorded traces (-w / -r).  The format is described in doc/trace-format.md:
 * a fixed header, then self-contained raw deflate blocks of packed records,
 * each with its own length and CRC, so a file cut at any byte still reads
 * back up to its last complete block.
 */
#ifndef CT_TRACE_FILE_H
#define CT_TRACE_FILE_H

#include <stdbool.h>
#include <stdint.h>
#include "closetrace.h"
#include "output.h"

#define CT_FILE_MAGIC "CLOSETRC"
#define CT_FILE_VERSION 1
#define CT_BLOCK_MAGIC 0x4b425443u /* "CTBK" little-endian */
#define CT_BLOCK_RECORDS 1
#define CT_BLOCK_STATS 2
#define CT_BLOCK_ROTATED 3 /* closes a file that --rotate continued in a new one */
#define CT_BLOCK_MAX_RAW (4u << 20) /* a reader refuses larger blocks */

/* on-disk header, little-endian */
struct ct_file_header {
	char magic[8];		 /* "CLOSETRC" */
	uint32_t version;	 /* CT_FILE_VERSION */
	uint32_t header_size;	 /* sizeof(struct ct_file_header) */
	uint32_t record_size;	 /* sizeof(struct ct_record) */
	uint32_t reserved;
	int64_t mono_to_real_ns; /* wall clock = record ts_ns + this */
	uint64_t boot_time_ns;	 /* CLOCK_REALTIME of boot */
	uint64_t created_ns;	 /* CLOCK_REALTIME when recording began */
	char hostname[64];
	char kernel[64];	 /* uname -r */
	char options[256];	 /* the recording's command line */
};

struct ct_block_header {
	uint32_t magic;	   /* CT_BLOCK_MAGIC */
	uint32_t type;	   /* CT_BLOCK_RECORDS or CT_BLOCK_STATS */
	uint32_t raw_len;  /* bytes after inflating */
	uint32_t comp_len; /* compressed bytes that follow */
	uint32_t crc;	   /* crc32 of the compressed bytes */
	uint32_t count;	   /* records in the block */
};

/* ---- writing ---- */

struct recorder;

struct recorder_opts {
	const char *path;	/* "-" for stdout */
	unsigned int mode;	/* file permission bits, 0600 by default */
	uint64_t rotate_size;	/* start a new file past this many bytes, 0 = never */
	unsigned int rotate_count; /* old files kept as PATH.1 ... PATH.N */
	const struct ct_file_header *header;
};

/* All return 0 or -errno; on error the recording cannot go on. */
int recorder__open(const struct recorder_opts *o, struct recorder **out);
int recorder__add(struct recorder *r, const struct ct_record *rec);
/* write the pending records as a block (called at least every second) */
int recorder__flush(struct recorder *r);
int recorder__write_stats(struct recorder *r, const struct ct_stats *s);
int recorder__close(struct recorder *r);
const char *recorder__path(const struct recorder *r);

/* ---- reading ---- */

enum reader_status {
	READ_OK = 0,	  /* a record was returned */
	READ_STATS,	  /* a stats block was read: see trace_reader__stats */
	READ_ROTATED,	  /* the recorder went on in a new file: a clean end */
	READ_EOF,	  /* clean end of file */
	READ_TRUNCATED,	  /* the file ends inside a block: everything before was read */
	READ_CORRUPT,	  /* a block is damaged: everything before was read */
	READ_IO_ERROR,
};

struct trace_reader;

/* Opens and checks the header; on failure returns NULL with a one-line message in err. */
struct trace_reader *trace_reader__open(const char *path, char *err, size_t errlen);
const struct ct_file_header *trace_reader__header(const struct trace_reader *rd);
enum reader_status trace_reader__next(struct trace_reader *rd, struct ct_record *rec);
const struct ct_stats *trace_reader__stats(const struct trace_reader *rd);
uint64_t trace_reader__offset(const struct trace_reader *rd); /* bytes of complete blocks */
uint64_t trace_reader__records(const struct trace_reader *rd);
void trace_reader__close(struct trace_reader *rd);

/* fill a header for a recording that starts now */
void trace_header_init(struct ct_file_header *h, int64_t mono_to_real_ns, int argc, char **argv);

/* reading from memory (the fuzz target) */
struct trace_reader *trace_reader__open_mem(const void *data, size_t len, char *err, size_t errlen);

#endif
