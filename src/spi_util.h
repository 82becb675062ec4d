/*-------------------------------------------------------------------------
 * spi_util.h
 *		Small SPI helpers shared by the triggers and the worker, and the
 *		hash tables keyed by webhook id (spi_util.c).
 *
 * IDENTIFICATION
 *		src/spi_util.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_SPI_UTIL_H
#define ALORO_WEBHOOK_SPI_UTIL_H

#include "postgres.h"

#include "executor/spi.h"
#include "utils/hsearch.h"
#include "utils/elog.h"

extern void aw_xact_begin(const char *activity);
extern void aw_xact_commit(void);
extern SPIPlanPtr aw_prepare(const char *sql, int nargs, Oid *types);
extern SPIPlanPtr aw_prepare_once(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types);
extern SPIPlanPtr aw_prepare_with(const char *sql, int nargs, Oid *types, int options);
extern char *aw_spi_text(HeapTuple tuple, TupleDesc desc, int col, MemoryContext cxt);
extern Datum aw_spi_datum(uint64 row, int col, bool *isnull);
extern Datum aw_int8_array(const int64 *values, int n);
extern HTAB *aw_webhook_hash(const char *name, Size entrysize, MemoryContext cxt);
extern ErrorData *aw_try_in_subtransaction(void (*fn) (void *arg), void *arg,
										   bool (*rethrow) (int sqlerrcode));

#endif							/* ALORO_WEBHOOK_SPI_UTIL_H */
