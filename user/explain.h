/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * What user space adds to a record while it is fresh: who still holds a
 * socket a close() left open, and what holds a port bind() found busy.
 * The answers are records too (CT_REC_HOLDER, CT_REC_PORT_USER), so that a
 * recording replays them.
 */
#ifndef CT_EXPLAIN_H
#define CT_EXPLAIN_H

#include "closetrace.h"

typedef void (*explain_emit_fn)(void *ctx, const struct ct_record *r);

/* scan /proc for the holders of a close-deferred record's socket */
void explain_close_deferred(const struct ct_record *r, explain_emit_fn emit, void *ctx);
/* ask sock_diag, in the failing process's namespace, what uses the port */
void explain_bind_conflict(const struct ct_record *r, explain_emit_fn emit, void *ctx);

#endif
