/*-------------------------------------------------------------------------
 * compat.h
 *		The differences between the PostgreSQL majors aloro_webhook builds
 *		against (15 and later), each written once, here.
 *
 *		Code elsewhere calls the aw_ names below and holds no
 *		PG_VERSION_NUM test of its own.
 *
 * IDENTIFICATION
 *		src/compat.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_COMPAT_H
#define ALORO_WEBHOOK_COMPAT_H

#include "postgres.h"

#include "storage/latch.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/memutils.h"

/*
 * A wait event set that lives as long as the process.  PostgreSQL 17 ties
 * the set to a resource owner instead of a memory context; NULL there means
 * no owner, so the set lasts until freed, as TopMemoryContext did before.
 */
#if PG_VERSION_NUM >= 170000
#define aw_CreateWaitEventSet(nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define aw_CreateWaitEventSet(nevents) CreateWaitEventSet(TopMemoryContext, (nevents))
#endif

/*
 * The "extra" data a GUC check hook hands back.  GUC releases it: with
 * free() up to 15, with pfree() from 16 on (GUC data lives in a memory
 * context there), so it must come from malloc() or from guc_malloc(),
 * which reports at the given level and returns NULL when out of memory.
 */
#if PG_VERSION_NUM >= 160000
#define aw_guc_malloc(size) guc_malloc(LOG, (size))
#else
#define aw_guc_malloc(size) malloc(size)
#endif

/*
 * DecodeDateTime: PostgreSQL 16 added an out argument for the details of an
 * error, which the caller may ignore.
 */
static inline int
aw_DecodeDateTime(char **field, int *ftype, int nf, int *dtype,
				  struct pg_tm *tm, fsec_t *fsec, int *tzp)
{
#if PG_VERSION_NUM >= 160000
	DateTimeErrorExtra extra;

	return DecodeDateTime(field, ftype, nf, dtype, tm, fsec, tzp, &extra);
#else
	return DecodeDateTime(field, ftype, nf, dtype, tm, fsec, tzp);
#endif
}

#endif							/* ALORO_WEBHOOK_COMPAT_H */
