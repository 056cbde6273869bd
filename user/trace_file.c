// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Recorded traces: the writer (with rotation) and the checking reader. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include "trace_file.h"

#define BLOCK_RECORDS 1024 /* records per block at most */

/*
 * Records are packed before deflate: a 64-bit mask of the record's
 * non-zero 8-byte words, then those words.  Most of a record is zero, so
 * the encoder sees about a third of the bytes.
 */
#define RECORD_WORDS (sizeof(struct ct_record) / 8)
_Static_assert(sizeof(struct ct_record) % 8 == 0 && RECORD_WORDS <= 64,
	       "a record must be whole 8-byte words, at most 64 of them");

static size_t pack_record(const struct ct_record *rec, unsigned char *out)
{
	const unsigned char *w = (const unsigned char *)rec;
	static const uint64_t zero;
	uint64_t mask = 0;
	size_t n = 8;

	for (size_t i = 0; i < RECORD_WORDS; i++, w += 8) {
		if (!memcmp(w, &zero, 8))
			continue;
		mask |= 1ULL << i;
		memcpy(out + n, w, 8);
		n += 8;
	}
	memcpy(out, &mask, 8);
	return n;
}

/* unpack one record from p (len bytes left); returns bytes used, 0 if malformed */
static size_t unpack_record(const unsigned char *p, size_t len, struct ct_record *rec)
{
	unsigned char *w = (unsigned char *)rec;
	uint64_t mask;
	size_t n = 8;

	if (len < 8)
		return 0;
	memcpy(&mask, p, 8);
	if (RECORD_WORDS < 64 && mask >> RECORD_WORDS)
		return 0;
	if (8 + 8 * (size_t)__builtin_popcountll(mask) > len)
		return 0;
	memset(rec, 0, sizeof(*rec));
	for (size_t i = 0; i < RECORD_WORDS; i++) {
		if (!(mask & (1ULL << i)))
			continue;
		memcpy(w + 8 * i, p + n, 8);
		n += 8;
	}
	return n;
}

static uint64_t clock_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

void trace_header_init(struct ct_file_header *h, int64_t mono_to_real_ns, int argc, char **argv)
{
	struct utsname u;
	size_t used = 0;

	memset(h, 0, sizeof(*h));
	memcpy(h->magic, CT_FILE_MAGIC, 8);
	h->version = CT_FILE_VERSION;
	h->header_size = sizeof(*h);
	h->record_size = sizeof(struct ct_record);
	h->mono_to_real_ns = mono_to_real_ns;
	h->created_ns = clock_ns(CLOCK_REALTIME);
	h->boot_time_ns = h->created_ns - clock_ns(CLOCK_BOOTTIME);
	gethostname(h->hostname, sizeof(h->hostname) - 1);
	if (!uname(&u))
		memcpy(h->kernel, u.release, strnlen(u.release, sizeof(h->kernel) - 1));
	for (int i = 0; i < argc && used < sizeof(h->options) - 1; i++) {
		int n = snprintf(h->options + used, sizeof(h->options) - used, "%s%s", i ? " " : "",
				 argv[i]);

		if (n < 0)
			break;
		used += n;
	}
}

/*
 * ---- the block encoder: raw deflate (RFC 1951) made for packed records ----
 *
 * zlib's deflate, even at level 1, was nearly all of the recorder's CPU
 * (about 0.7 us a record).  Records of one kind look alike, word for word:
 * each packed record is compared byte by byte with the last record of the
 * block that had the same mask (the same words, at the same offsets); runs
 * of three or more equal bytes become matches at that distance, the other
 * bytes literals, and the block is one deflate block with Huffman codes
 * made for it (or stored, if that is smaller).  On recordings of busy
 * machines: about four times faster than zlib level 1, for about 10% more
 * bytes.  Any inflate reads it: the format is unchanged.
 */
#define LITLEN_CODES 286 /* 0-255 literals, 256 end of block, 257-285 lengths */
#define DIST_CODES 30
#define CLEN_CODES 19	 /* the code length alphabet */
#define MAX_CODE_BITS 15
#define MAX_CLEN_BITS 7
#define MAX_MATCH 258
#define WINDOW 32768
#define MASK_SLOTS 64	 /* last record seen per mask (hashed) */
#define STORED_MAX 65535 /* bytes in one stored block */

/*
 * A token is a literal byte (< 256), or a match with its symbols worked out:
 * length symbol (9 bits), its extra bits (5), distance symbol (5), its
 * extra bits (13).
 */
#define TOKEN_MATCH(lsym, lextra, dsym, dextra) \
	((uint32_t)(lsym) | (lextra) << 9 | (dsym) << 14 | (uint32_t)(dextra) << 19)

struct encoder {
	uint32_t *tokens;
	size_t n_tokens;
	uint32_t litlen_freq[LITLEN_CODES], dist_freq[DIST_CODES];
	uint8_t litlen_len[LITLEN_CODES], dist_len[DIST_CODES];
	uint16_t litlen_code[LITLEN_CODES], dist_code[DIST_CODES];
};

/* extra bits after each length symbol (257-285) and distance symbol */
static const uint8_t length_extra_bits[LITLEN_CODES - 257] = {
	0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
};
static const uint8_t dist_extra_bits[DIST_CODES] = {
	0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
};

static inline uint64_t load_le64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static inline void store_le64(unsigned char *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, 8);
}

/*
 * Deflate's bit order, without branches: the pending bits (fewer than 8)
 * and the new ones (at most 48) are stored as 8 bytes, and p moves past
 * the whole bytes.  The output needs 8 bytes of room past its end.
 */
struct bit_writer {
	unsigned char *p;
	uint64_t acc;
	unsigned int n; /* bits pending in acc, fewer than 8 */
};

static inline void bits_put(struct bit_writer *w, uint64_t v, unsigned int n)
{
	w->acc |= v << w->n;
	w->n += n;
	store_le64(w->p, w->acc);
	w->p += w->n >> 3;
	w->acc >>= w->n & ~7u;
	w->n &= 7;
}

/* pad to a byte boundary */
static void bits_flush(struct bit_writer *w)
{
	if (w->n)
		*w->p++ = w->acc;
	w->acc = 0;
	w->n = 0;
}

/* length 3-258: its symbol, and the value of its extra bits */
static inline unsigned int length_symbol(unsigned int len, unsigned int *extra)
{
	unsigned int v = len - 3, l;

	*extra = 0;
	if (len == MAX_MATCH)
		return 285;
	if (v < 8)
		return 257 + v;
	l = 31 - __builtin_clz(v);
	*extra = v & ((1u << (l - 2)) - 1);
	return 257 + 4 * (l - 1) + ((v >> (l - 2)) & 3);
}

/* distance 1-32768: its symbol and extra bits */
static inline unsigned int dist_symbol(unsigned int dist, unsigned int *extra)
{
	unsigned int v = dist - 1, l;

	*extra = 0;
	if (v < 4)
		return v;
	l = 31 - __builtin_clz(v);
	*extra = v & ((1u << (l - 1)) - 1);
	return 2 * l + ((v >> (l - 1)) & 1);
}

static inline void token_literal(struct encoder *e, unsigned char c)
{
	e->tokens[e->n_tokens++] = c;
	e->litlen_freq[c]++;
}

/* run equal bytes ending at end: matches at distance dist, or literals if too short */
static inline void token_run(struct encoder *e, const unsigned char *end, size_t run, size_t dist)
{
	unsigned int lsym, lextra, dsym, dextra;

	dsym = dist_symbol(dist, &dextra);
	while (run >= 3) {
		size_t len = run < MAX_MATCH ? run : MAX_MATCH;

		lsym = length_symbol(len, &lextra);
		e->tokens[e->n_tokens++] = TOKEN_MATCH(lsym, lextra, dsym, dextra);
		e->litlen_freq[lsym]++;
		e->dist_freq[dsym]++;
		run -= len;
	}
	for (; run; run--)
		token_literal(e, end[-(ptrdiff_t)run]);
}

/*
 * One packed record of n bytes (whole words) at cur, against ref (NULL:
 * none).  In a word that differs, the bytes from the first to the last
 * differing one are literals; the equal bytes around them join the runs.
 */
static void tokenize_record(struct encoder *e, const unsigned char *cur, const unsigned char *ref,
			    size_t n)
{
	size_t run = 0;

	if (!ref) {
		for (size_t i = 0; i < n; i++)
			token_literal(e, cur[i]);
		return;
	}
	for (size_t k = 0; k < n; k += 8) {
		uint64_t x = load_le64(cur + k) ^ load_le64(ref + k);
		unsigned int lo, hi;

		if (!x) {
			run += 8;
			continue;
		}
		lo = __builtin_ctzll(x) / 8;
		hi = 7 - __builtin_clzll(x) / 8;
		token_run(e, cur + k + lo, run + lo, cur - ref);
		for (unsigned int b = lo; b <= hi; b++)
			token_literal(e, cur[k + b]);
		run = 7 - hi;
	}
	token_run(e, cur + n, run, cur - ref);
}

/* the packed records of a block (already checked by their writer) into tokens */
static void tokenize_block(struct encoder *e, const unsigned char *raw, size_t len)
{
	struct {
		uint64_t mask;
		const unsigned char *at;
	} last[MASK_SLOTS] = {};
	size_t pos = 0;

	e->n_tokens = 0;
	memset(e->litlen_freq, 0, sizeof(e->litlen_freq));
	memset(e->dist_freq, 0, sizeof(e->dist_freq));
	while (pos < len) {
		const unsigned char *cur = raw + pos, *ref;
		uint64_t mask;
		size_t n, slot;

		memcpy(&mask, cur, 8);
		n = 8 + 8 * (size_t)__builtin_popcountll(mask);
		slot = (mask * 0x9e3779b97f4a7c15ULL) >> 58;
		ref = last[slot].at;
		if (ref && (last[slot].mask != mask || cur - ref > WINDOW))
			ref = NULL;
		tokenize_record(e, cur, ref, n);
		last[slot].mask = mask;
		last[slot].at = cur;
		pos += n;
	}
	e->litlen_freq[256]++; /* end of block */
}

struct huff_leaf {
	uint32_t weight;
	uint16_t sym;
};

static int leaf_cmp(const void *a, const void *b)
{
	const struct huff_leaf *x = a, *y = b;

	if (x->weight != y->weight)
		return x->weight < y->weight ? -1 : 1;
	return x->sym - y->sym;
}

/* Huffman code lengths for leaves sorted by weight (m >= 2); returns the longest */
static unsigned int huff_depths(const struct huff_leaf *leaf, int m, uint8_t *len)
{
	uint64_t w[2 * LITLEN_CODES];
	uint16_t parent[2 * LITLEN_CODES];
	uint8_t depth[2 * LITLEN_CODES];
	int next_leaf = 0, next_inner = m, top = 2 * m - 2;
	unsigned int longest = 0;

	for (int i = 0; i < m; i++)
		w[i] = leaf[i].weight;
	/* two queues: the leaves, and the inner nodes as they are made (ascending too) */
	for (int node = m; node <= top; node++) {
		int pick[2];

		for (int k = 0; k < 2; k++) {
			if (next_leaf < m && (next_inner >= node || w[next_leaf] <= w[next_inner]))
				pick[k] = next_leaf++;
			else
				pick[k] = next_inner++;
		}
		w[node] = w[pick[0]] + w[pick[1]];
		parent[pick[0]] = parent[pick[1]] = node;
	}
	depth[top] = 0;
	for (int i = top - 1; i >= 0; i--)
		depth[i] = depth[parent[i]] + 1;
	for (int i = 0; i < m; i++) {
		len[leaf[i].sym] = depth[i];
		if (depth[i] > longest)
			longest = depth[i];
	}
	return longest;
}

/*
 * Code lengths for freq[0..n), none longer than max_bits: the counts are
 * halved until the tree is shallow enough.  At least two symbols get a
 * code, so that the code is complete (inflate refuses a lone code).
 */
static void huff_lengths(const uint32_t *freq, int n, unsigned int max_bits, uint8_t *len)
{
	struct huff_leaf leaf[LITLEN_CODES];

	for (unsigned int shift = 0;; shift++) {
		int m = 0;

		memset(len, 0, n);
		for (int i = 0; i < n; i++) {
			if (freq[i])
				leaf[m++] = (struct huff_leaf){ freq[i] >> shift ? freq[i] >> shift : 1, i };
		}
		for (int i = 0; i < n && m < 2; i++) {
			if (!freq[i])
				leaf[m++] = (struct huff_leaf){ 1, i };
		}
		qsort(leaf, m, sizeof(leaf[0]), leaf_cmp);
		if (huff_depths(leaf, m, len) <= max_bits)
			return;
	}
}

/* canonical codes for the lengths (RFC 1951 3.2.2), bit-reversed for output */
static void huff_codes(const uint8_t *len, int n, uint16_t *code)
{
	uint16_t count[MAX_CODE_BITS + 1] = {}, next[MAX_CODE_BITS + 1];
	unsigned int c = 0;

	for (int i = 0; i < n; i++)
		count[len[i]]++;
	count[0] = 0;
	for (int bits = 1; bits <= MAX_CODE_BITS; bits++) {
		c = (c + count[bits - 1]) << 1;
		next[bits] = c;
	}
	for (int i = 0; i < n; i++) {
		unsigned int v, r = 0;

		if (!len[i])
			continue;
		v = next[len[i]]++;
		for (int b = 0; b < len[i]; b++, v >>= 1)
			r = r << 1 | (v & 1);
		code[i] = r;
	}
}

/*
 * The code lengths of both trees, run-length coded with the code length
 * alphabet: 16 repeats the previous length 3-6 times, 17 and 18 give 3-10
 * and 11-138 zeros.  Each item is symbol | extra << 8.
 */
static int clen_items(const uint8_t *lens, int n, uint16_t *item)
{
	int k = 0, prev = -1;

	for (int i = 0; i < n;) {
		int run = 1;

		while (i + run < n && lens[i + run] == lens[i])
			run++;
		if (!lens[i] && run >= 11) {
			run = run > 138 ? 138 : run;
			item[k++] = 18 | (run - 11) << 8;
		} else if (!lens[i] && run >= 3) {
			item[k++] = 17 | (run - 3) << 8;
		} else if (lens[i] == prev && run >= 3) {
			run = run > 6 ? 6 : run;
			item[k++] = 16 | (run - 3) << 8;
		} else {
			run = 1;
			item[k++] = lens[i];
		}
		prev = lens[i];
		i += run;
	}
	return k;
}

/*
 * The tokens with the block's codes: a token's code, extra bits, and for a
 * match the distance code and its extra bits, as one write of at most 48
 * bits (for a literal, the distance part is masked off).
 */
static void write_tokens(const struct encoder *e, struct bit_writer *out)
{
	uint8_t lbits[LITLEN_CODES], dbits[DIST_CODES];
	struct bit_writer w = *out; /* in registers for the loop */

	for (int i = 0; i < LITLEN_CODES; i++)
		lbits[i] = e->litlen_len[i] + (i > 256 ? length_extra_bits[i - 257] : 0);
	for (int i = 0; i < DIST_CODES; i++)
		dbits[i] = e->dist_len[i] + dist_extra_bits[i];
	for (size_t i = 0; i < e->n_tokens; i++) {
		uint32_t t = e->tokens[i];
		unsigned int lsym = t & 0x1ff, dsym = t >> 14 & 0x1f;
		uint64_t match = -(uint64_t)(lsym > 256);
		uint64_t v = e->litlen_code[lsym] | (uint64_t)(t >> 9 & 0x1f) << e->litlen_len[lsym];
		uint64_t d = e->dist_code[dsym] | (uint64_t)(t >> 19) << e->dist_len[dsym];

		bits_put(&w, v | (d << lbits[lsym] & match), lbits[lsym] + (dbits[dsym] & match));
	}
	*out = w;
}

/* the tokens as one final dynamic Huffman block at w */
static void write_dynamic(struct encoder *e, struct bit_writer *w)
{
	static const uint8_t clen_order[CLEN_CODES] = { 16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
							11, 4,	12, 3, 13, 2, 14, 1, 15 };
	static const uint8_t clen_extra[CLEN_CODES] = { [16] = 2, [17] = 3, [18] = 7 };
	uint8_t lens[LITLEN_CODES + DIST_CODES], clen_len[CLEN_CODES];
	uint16_t item[LITLEN_CODES + DIST_CODES], clen_code[CLEN_CODES];
	uint32_t clen_freq[CLEN_CODES] = {};
	int hlit = LITLEN_CODES, hdist = DIST_CODES, hclen = CLEN_CODES, n_items;

	huff_lengths(e->litlen_freq, LITLEN_CODES, MAX_CODE_BITS, e->litlen_len);
	huff_lengths(e->dist_freq, DIST_CODES, MAX_CODE_BITS, e->dist_len);
	huff_codes(e->litlen_len, LITLEN_CODES, e->litlen_code);
	huff_codes(e->dist_len, DIST_CODES, e->dist_code);
	while (hlit > 257 && !e->litlen_len[hlit - 1])
		hlit--;
	while (hdist > 1 && !e->dist_len[hdist - 1])
		hdist--;
	/* one sequence: repeats may run from the literal/length lengths into the distance ones */
	memcpy(lens, e->litlen_len, hlit);
	memcpy(lens + hlit, e->dist_len, hdist);
	n_items = clen_items(lens, hlit + hdist, item);
	for (int i = 0; i < n_items; i++)
		clen_freq[item[i] & 0xff]++;
	huff_lengths(clen_freq, CLEN_CODES, MAX_CLEN_BITS, clen_len);
	huff_codes(clen_len, CLEN_CODES, clen_code);
	while (hclen > 4 && !clen_len[clen_order[hclen - 1]])
		hclen--;

	bits_put(w, 1, 1); /* BFINAL */
	bits_put(w, 2, 2); /* BTYPE: dynamic Huffman */
	bits_put(w, hlit - 257, 5);
	bits_put(w, hdist - 1, 5);
	bits_put(w, hclen - 4, 4);
	for (int i = 0; i < hclen; i++)
		bits_put(w, clen_len[clen_order[i]], 3);
	for (int i = 0; i < n_items; i++) {
		unsigned int sym = item[i] & 0xff;

		bits_put(w, clen_code[sym], clen_len[sym]);
		if (clen_extra[sym])
			bits_put(w, item[i] >> 8, clen_extra[sym]);
	}
	write_tokens(e, w);
	bits_put(w, e->litlen_code[256], e->litlen_len[256]);
	bits_flush(w);
}

/* raw as stored blocks (no compression); returns the bytes written at out */
static size_t write_stored(const unsigned char *raw, size_t len, unsigned char *out)
{
	unsigned char *p = out;

	do {
		size_t n = len < STORED_MAX ? len : STORED_MAX;

		*p++ = n == len; /* BFINAL, BTYPE 00, then aligned */
		*p++ = n;
		*p++ = n >> 8;
		*p++ = ~n;
		*p++ = ~n >> 8;
		memcpy(p, raw, n);
		p += n;
		raw += n;
		len -= n;
	} while (len);
	return p - out;
}

/* worst case of either form for len bytes: stored, or 15 bits a literal and the trees */
static size_t encoded_bound(size_t len)
{
	return 2 * len + 1024;
}

/* a block of packed records as raw deflate at out; returns its length */
static size_t encode_records(struct encoder *e, const unsigned char *raw, size_t len,
			     unsigned char *out)
{
	struct bit_writer w = { .p = out };
	size_t n, stored = len + 5 * ((len + STORED_MAX - 1) / STORED_MAX);

	tokenize_block(e, raw, len);
	write_dynamic(e, &w);
	n = w.p - out;
	/* incompressible records (never seen in practice): stored is smaller */
	return n < stored ? n : write_stored(raw, len, out);
}

/* ---- writer ---- */

struct recorder {
	struct recorder_opts o;
	char *path;
	int fd;
	uint64_t bytes; /* in the current file */
	unsigned int n; /* records pending, packed */
	size_t len;	/* their packed bytes */
	unsigned char packed[BLOCK_RECORDS * (8 + sizeof(struct ct_record))];
	unsigned char *out; /* a block header, then its deflate data */
	struct encoder enc;
};

static int write_all(int fd, const void *p, size_t len)
{
	const char *c = p;

	while (len) {
		ssize_t w = write(fd, c, len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		c += w;
		len -= w;
	}
	return 0;
}

static int open_output(struct recorder *r)
{
	int err;

	if (strcmp(r->path, "-") == 0) {
		r->fd = STDOUT_FILENO;
	} else {
		r->fd = open(r->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, r->o.mode);
		if (r->fd < 0)
			return -errno;
		/* O_CREAT honours the umask; an existing file keeps its mode */
		if (fchmod(r->fd, r->o.mode) && errno != EPERM)
			return -errno;
	}
	r->bytes = 0;
	err = write_all(r->fd, r->o.header, sizeof(*r->o.header));
	if (!err)
		r->bytes += sizeof(*r->o.header);
	return err;
}

int recorder__open(const struct recorder_opts *o, struct recorder **out)
{
	struct recorder *r = calloc(1, sizeof(*r));
	int err;

	if (!r)
		return -ENOMEM;
	r->o = *o;
	r->fd = -1;
	r->path = strdup(o->path);
	r->out = malloc(sizeof(struct ct_block_header) + encoded_bound(sizeof(r->packed)));
	/* a token per packed byte at most */
	r->enc.tokens = malloc(sizeof(r->packed) * sizeof(r->enc.tokens[0]));
	if (!r->path || !r->out || !r->enc.tokens) {
		recorder__close(r);
		return -ENOMEM;
	}
	err = open_output(r);
	if (err) {
		recorder__close(r);
		return err;
	}
	*out = r;
	return 0;
}

const char *recorder__path(const struct recorder *r)
{
	return r->path;
}

/* PATH -> PATH.1 -> ... -> PATH.N (the oldest goes) */
static int write_block(struct recorder *r, uint32_t type, const void *raw, uint32_t raw_len,
		       uint32_t count);

static int rotate(struct recorder *r)
{
	size_t len = strlen(r->path) + 16;
	char *from = malloc(len), *to = malloc(len);
	int err = 0;

	if (!from || !to) {
		err = -ENOMEM;
		goto out;
	}
	/* say where this file ends, so a reader can tell it from a cut one */
	err = write_block(r, CT_BLOCK_ROTATED, &r->bytes, sizeof(r->bytes), 0);
	if (err)
		goto out;
	if (close(r->fd)) {
		r->fd = -1;
		err = -errno;
		goto out;
	}
	r->fd = -1;
	for (unsigned int i = r->o.rotate_count; i > 0; i--) {
		if (i == 1)
			snprintf(from, len, "%s", r->path);
		else
			snprintf(from, len, "%s.%u", r->path, i - 1);
		snprintf(to, len, "%s.%u", r->path, i);
		if (rename(from, to) && errno != ENOENT) {
			err = -errno;
			goto out;
		}
	}
	if (r->o.rotate_count == 0 && unlink(r->path) && errno != ENOENT) {
		err = -errno;
		goto out;
	}
	err = open_output(r);
out:
	free(from);
	free(to);
	return err;
}

static int write_block(struct recorder *r, uint32_t type, const void *raw, uint32_t raw_len,
		       uint32_t count)
{
	struct ct_block_header bh = { .magic = CT_BLOCK_MAGIC, .type = type, .raw_len = raw_len,
				      .count = count };
	unsigned char *data = r->out + sizeof(bh);
	size_t zlen;
	int err;

	/* records with the encoder above; the few bytes of the other blocks stored */
	if (type == CT_BLOCK_RECORDS)
		zlen = encode_records(&r->enc, raw, raw_len, data);
	else
		zlen = write_stored(raw, raw_len, data);
	bh.comp_len = zlen;
	bh.crc = crc32(0, data, zlen);
	memcpy(r->out, &bh, sizeof(bh));
	err = write_all(r->fd, r->out, sizeof(bh) + zlen);
	if (err)
		return err;
	r->bytes += sizeof(bh) + zlen;
	return 0;
}

int recorder__flush(struct recorder *r)
{
	int err;

	if (!r->n)
		return 0;
	err = write_block(r, CT_BLOCK_RECORDS, r->packed, r->len, r->n);
	r->n = 0;
	r->len = 0;
	if (err)
		return err;
	if (r->o.rotate_size && r->bytes >= r->o.rotate_size && strcmp(r->path, "-"))
		return rotate(r);
	return 0;
}

int recorder__add(struct recorder *r, const struct ct_record *rec)
{
	r->len += pack_record(rec, r->packed + r->len);
	if (++r->n == BLOCK_RECORDS)
		return recorder__flush(r);
	return 0;
}

int recorder__write_stats(struct recorder *r, const struct ct_stats *s)
{
	int err = recorder__flush(r);

	if (err)
		return err;
	return write_block(r, CT_BLOCK_STATS, s, sizeof(*s), 0);
}

int recorder__close(struct recorder *r)
{
	int err = 0;

	if (!r)
		return 0;
	if (r->fd >= 0 && r->fd != STDOUT_FILENO && close(r->fd))
		err = -errno;
	free(r->enc.tokens);
	free(r->out);
	free(r->path);
	free(r);
	return err;
}

/* ---- reader ---- */

struct trace_reader {
	FILE *f;
	struct ct_file_header h;
	uint64_t offset; /* end of the last complete block */
	uint64_t records;
	struct ct_stats stats;
	unsigned char *raw, *comp; /* grown to the largest block seen */
	size_t raw_cap, comp_cap;
	uint32_t n, next; /* records in the current block, next to return */
	size_t pos, len;  /* the next packed record in raw, the block's length */
};

static int grow(unsigned char **buf, size_t *cap, size_t need)
{
	unsigned char *p;

	if (need <= *cap)
		return 0;
	p = realloc(*buf, need);
	if (!p)
		return -1;
	*buf = p;
	*cap = need;
	return 0;
}

static struct trace_reader *reader_init(FILE *f, char *err, size_t errlen)
{
	struct trace_reader *rd = calloc(1, sizeof(*rd));
	size_t got;

	if (!rd) {
		snprintf(err, errlen, "out of memory");
		fclose(f);
		return NULL;
	}
	rd->f = f;
	got = fread(&rd->h, 1, sizeof(rd->h), f);
	if (ferror(f)) {
		snprintf(err, errlen, "cannot read: %s", strerror(errno));
		goto fail;
	}
	if (got < 8 || memcmp(rd->h.magic, CT_FILE_MAGIC, 8)) {
		snprintf(err, errlen, got == 0 ? "empty file, not a closetrace recording" :
						 "not a closetrace recording (bad magic)");
		goto fail;
	}
	if (got < 16) {
		snprintf(err, errlen, "truncated inside the file header");
		goto fail;
	}
	if (rd->h.version > CT_FILE_VERSION) {
		snprintf(err, errlen, "recording format version %u is newer than this closetrace reads (%u)",
			 rd->h.version, CT_FILE_VERSION);
		goto fail;
	}
	if (rd->h.version == 0 || rd->h.header_size != sizeof(rd->h)) {
		snprintf(err, errlen, "corrupt file header");
		goto fail;
	}
	if (got < sizeof(rd->h)) {
		snprintf(err, errlen, "truncated inside the file header");
		goto fail;
	}
	if (rd->h.record_size != sizeof(struct ct_record)) {
		snprintf(err, errlen, "record size %u does not match this closetrace (%zu)",
			 rd->h.record_size, sizeof(struct ct_record));
		goto fail;
	}
	rd->h.hostname[sizeof(rd->h.hostname) - 1] = '\0';
	rd->h.kernel[sizeof(rd->h.kernel) - 1] = '\0';
	rd->h.options[sizeof(rd->h.options) - 1] = '\0';
	rd->offset = sizeof(rd->h);
	return rd;
fail:
	trace_reader__close(rd);
	return NULL;
}

struct trace_reader *trace_reader__open(const char *path, char *err, size_t errlen)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : fdopen(dup(STDIN_FILENO), "rb");

	if (!f) {
		snprintf(err, errlen, "cannot open: %s", strerror(errno));
		return NULL;
	}
	return reader_init(f, err, errlen);
}

struct trace_reader *trace_reader__open_mem(const void *data, size_t len, char *err, size_t errlen)
{
	FILE *f;

	if (!len) {
		snprintf(err, errlen, "empty file, not a closetrace recording");
		return NULL;
	}
	f = fmemopen((void *)data, len, "rb");
	if (!f) {
		snprintf(err, errlen, "cannot open: %s", strerror(errno));
		return NULL;
	}
	return reader_init(f, err, errlen);
}

const struct ct_file_header *trace_reader__header(const struct trace_reader *rd)
{
	return &rd->h;
}

const struct ct_stats *trace_reader__stats(const struct trace_reader *rd)
{
	return &rd->stats;
}

uint64_t trace_reader__offset(const struct trace_reader *rd)
{
	return rd->offset;
}

uint64_t trace_reader__records(const struct trace_reader *rd)
{
	return rd->records;
}

/* inflate a raw deflate block of exactly raw_len bytes; 0 on success */
static int inflate_raw(struct trace_reader *rd, uint32_t comp_len, uint32_t raw_len, uLongf *out)
{
	z_stream z = { .next_in = rd->comp, .avail_in = comp_len,
		       .next_out = rd->raw, .avail_out = raw_len };
	int ret;

	if (inflateInit2(&z, -15) != Z_OK)
		return -1;
	ret = inflate(&z, Z_FINISH);
	*out = raw_len - z.avail_out;
	inflateEnd(&z);
	return ret == Z_STREAM_END && z.avail_in == 0 && *out == raw_len ? 0 : -1;
}

/* read the next block; READ_OK when records are ready */
static enum reader_status read_block(struct trace_reader *rd)
{
	struct ct_block_header bh;
	uLongf raw_len;
	size_t got;

	got = fread(&bh, 1, sizeof(bh), rd->f);
	if (got == 0)
		return ferror(rd->f) ? READ_IO_ERROR : READ_EOF;
	if (got < sizeof(bh))
		return ferror(rd->f) ? READ_IO_ERROR : READ_TRUNCATED;
	if (bh.magic != CT_BLOCK_MAGIC || bh.raw_len > CT_BLOCK_MAX_RAW || !bh.raw_len ||
	    bh.comp_len > compressBound(bh.raw_len))
		return READ_CORRUPT;
	if (grow(&rd->comp, &rd->comp_cap, bh.comp_len ? bh.comp_len : 1) ||
	    grow(&rd->raw, &rd->raw_cap, bh.raw_len))
		return READ_IO_ERROR;
	got = fread(rd->comp, 1, bh.comp_len, rd->f);
	if (got < bh.comp_len)
		return ferror(rd->f) ? READ_IO_ERROR : READ_TRUNCATED;
	if (crc32(0, rd->comp, bh.comp_len) != bh.crc)
		return READ_CORRUPT;
	if (inflate_raw(rd, bh.comp_len, bh.raw_len, &raw_len))
		return READ_CORRUPT;
	switch (bh.type) {
	case CT_BLOCK_RECORDS: {
		struct ct_record scratch;
		size_t pos = 0, used;

		/* check the whole block now: a damaged one yields no records */
		for (uint32_t i = 0; i < bh.count; i++, pos += used) {
			used = unpack_record(rd->raw + pos, raw_len - pos, &scratch);
			if (!used)
				return READ_CORRUPT;
		}
		if (!bh.count || pos != raw_len)
			return READ_CORRUPT;
		rd->n = bh.count;
		rd->next = 0;
		rd->pos = 0;
		rd->len = raw_len;
		break;
	}
	case CT_BLOCK_STATS:
		/* older recordings have fewer counters; newer ones may have more */
		if (raw_len < CT_STATS_V1_SIZE || raw_len % sizeof(uint64_t) || bh.count)
			return READ_CORRUPT;
		memset(&rd->stats, 0, sizeof(rd->stats));
		memcpy(&rd->stats, rd->raw, raw_len < sizeof(rd->stats) ? raw_len : sizeof(rd->stats));
		rd->n = rd->next = 0;
		break;
	case CT_BLOCK_ROTATED:
		if (raw_len != sizeof(uint64_t) || bh.count)
			return READ_CORRUPT;
		rd->n = rd->next = 0;
		break;
	default:
		return READ_CORRUPT;
	}
	rd->offset += sizeof(bh) + bh.comp_len;
	if (bh.type == CT_BLOCK_STATS)
		return READ_STATS;
	return bh.type == CT_BLOCK_ROTATED ? READ_ROTATED : READ_OK;
}

enum reader_status trace_reader__next(struct trace_reader *rd, struct ct_record *rec)
{
	while (rd->next >= rd->n) {
		enum reader_status st = read_block(rd);


		if (st != READ_OK)
			return st;
	}
	rd->pos += unpack_record(rd->raw + rd->pos, rd->len - rd->pos, rec);
	rd->next++;
	rd->records++;
	return READ_OK;
}

void trace_reader__close(struct trace_reader *rd)
{
	if (!rd)
		return;
	if (rd->f)
		fclose(rd->f);
	free(rd->raw);
	free(rd->comp);
	free(rd);
}
