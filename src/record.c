/*-------------------------------------------------------------------------
 * record.c
 *		The worker's record of finished attempts: the attempt rows and each
 *		delivery's new state, in one statement per batch, guarded so that one
 *		bad row cannot block or re-send the others.  Runs over SPI inside the
 *		turn's transaction (turn.c); none of it waits on the network.
 *
 * IDENTIFICATION
 *		src/record.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "queue.h"
#include "spi_util.h"

static SPIPlanPtr aw_plan_record = NULL;
static SPIPlanPtr aw_plan_record_by_id = NULL;
static SPIPlanPtr aw_plan_record_sent = NULL;

/* the token of the worker whose results aw_queue_record is writing */
static int64 aw_record_token = 0;

/* Drops the saved plans, for when the extension went away. */
void
aw_record_forget_plans(void)
{
	if (aw_plan_record != NULL)
		SPI_freeplan(aw_plan_record);
	if (aw_plan_record_by_id != NULL)
		SPI_freeplan(aw_plan_record_by_id);
	if (aw_plan_record_sent != NULL)
		SPI_freeplan(aw_plan_record_sent);
	aw_plan_record = aw_plan_record_by_id = aw_plan_record_sent = NULL;
}

#define AW_RECORD_NARGS 17

/* builds the arrays for the record statement from ds[0..n) */
static void
aw_record_args(AwDelivery **ds, int n, Datum *args)
{
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *attempt = palloc(sizeof(Datum) * n);
	Datum	   *started = palloc(sizeof(Datum) * n);
	Datum	   *duration = palloc(sizeof(Datum) * n);
	Datum	   *http = palloc(sizeof(Datum) * n);
	bool	   *http_null = palloc(sizeof(bool) * n);
	Datum	   *error = palloc(sizeof(Datum) * n);
	bool	   *error_null = palloc(sizeof(bool) * n);
	Datum	   *resp = palloc(sizeof(Datum) * n);
	bool	   *resp_null = palloc(sizeof(bool) * n);
	Datum	   *status = palloc(sizeof(Datum) * n);
	Datum	   *next = palloc(sizeof(Datum) * n);
	bool	   *next_null = palloc(sizeof(bool) * n);
	Datum	   *record = palloc(sizeof(Datum) * n);
	Datum	   *hooks = palloc(sizeof(Datum) * n);
	Datum	   *tids = palloc(sizeof(Datum) * n);
	Datum	   *streamed = palloc(sizeof(Datum) * n);
	Datum	   *bytes = palloc(sizeof(Datum) * n);
	Datum	   *budget = palloc(sizeof(Datum) * n);
	int			dims[1] = {n};

	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		AwOutcome  *r = &ds[i]->outcome;

		ids[i] = Int64GetDatum(ds[i]->id);
		attempt[i] = Int32GetDatum(r->attempt);
		started[i] = TimestampTzGetDatum(r->started_at);
		duration[i] = Int32GetDatum(r->duration_ms);
		http[i] = Int32GetDatum(r->http_status);
		http_null[i] = r->http_status == 0;
		error[i] = r->error ? CStringGetTextDatum(r->error) : (Datum) 0;
		error_null[i] = r->error == NULL;
		resp[i] = r->response_body ? CStringGetTextDatum(r->response_body) : (Datum) 0;
		resp_null[i] = r->response_body == NULL;
		status[i] = CStringGetTextDatum(r->new_status);
		next[i] = TimestampTzGetDatum(r->next_attempt_at);
		next_null[i] = r->next_attempt_at == 0;
		record[i] = BoolGetDatum(r->record_attempt);
		hooks[i] = Int64GetDatum(ds[i]->webhook_id);
		tids[i] = PointerGetDatum(&ds[i]->ctid);
		streamed[i] = BoolGetDatum(ds[i]->streamed);
		bytes[i] = Int32GetDatum((int32) Min(ds[i]->body_len, (size_t) PG_INT32_MAX));
		budget[i] = Int32GetDatum(ds[i]->budget_start);
	}
#define AW_ARR(vals, nullsv, typ, len, byval, align) \
	PointerGetDatum(construct_md_array(vals, nullsv, 1, dims, lbs, typ, len, byval, align))
	args[0] = AW_ARR(ids, NULL, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	args[1] = AW_ARR(attempt, NULL, INT4OID, 4, true, TYPALIGN_INT);
	args[2] = AW_ARR(started, NULL, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	args[3] = AW_ARR(duration, NULL, INT4OID, 4, true, TYPALIGN_INT);
	args[4] = AW_ARR(http, http_null, INT4OID, 4, true, TYPALIGN_INT);
	args[5] = AW_ARR(error, error_null, TEXTOID, -1, false, TYPALIGN_INT);
	args[6] = AW_ARR(resp, resp_null, TEXTOID, -1, false, TYPALIGN_INT);
	args[7] = AW_ARR(status, NULL, TEXTOID, -1, false, TYPALIGN_INT);
	args[8] = AW_ARR(next, next_null, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	args[9] = AW_ARR(record, NULL, BOOLOID, 1, true, TYPALIGN_CHAR);
	args[10] = AW_ARR(hooks, NULL, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	args[11] = AW_ARR(tids, NULL, TIDOID, sizeof(ItemPointerData), false, TYPALIGN_SHORT);
	args[12] = AW_ARR(streamed, NULL, BOOLOID, 1, true, TYPALIGN_CHAR);
	args[13] = AW_ARR(bytes, NULL, INT4OID, 4, true, TYPALIGN_INT);
	args[14] = AW_ARR(budget, NULL, INT4OID, 4, true, TYPALIGN_INT);
#undef AW_ARR
}

/*
 * The record statement: the attempt rows, and each delivery's new state.
 * Its head (AW_RECORD_HEAD) writes the attempt rows and the queue rows of
 * the deliveries claimed from the queue, which are recorded only while we
 * still hold them: the first %s says how the queue rows to delete (finished
 * deliveries) are found, the second how those to update (retries) are -- by
 * the row versions we claimed (a TID scan, whatever the statistics say), or,
 * for a row someone changed since, by delivery id.  Its tail writes where
 * each delivery stands and returns the ids it recorded.  No two of its parts
 * are joined to each other: each reads s, or arrays made from it.
 */
#define AW_RECORD_HEAD \
	"WITH s AS (" \
	"  SELECT r.*, " \
	/* a retry is pointless once the webhook is deleted */ \
	"         (r.new_status = 'pending' AND NOT EXISTS " \
	"            (SELECT 1 FROM aloro_webhook.webhooks w WHERE w.id = r.webhook_id)) AS orphaned " \
	"    FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), " \
	"                    pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), " \
	"                    pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9), " \
	"                    pg_catalog.unnest($10), pg_catalog.unnest($11), pg_catalog.unnest($12), " \
	"                    pg_catalog.unnest($13), pg_catalog.unnest($14), pg_catalog.unnest($15)) " \
	"      AS r(id, attempt, started_at, duration_ms, http_status, error, " \
	"           response_body, new_status, next_attempt_at, record_attempt, webhook_id, claimed_ctid, " \
	"           streamed, bytes, budget_start)), " \
	"a AS (" \
	"  INSERT INTO aloro_webhook.delivery_attempts " \
	"         (delivery_id, attempt, started_at, duration_ms, http_status, error, response_body) " \
	"  SELECT s.id, s.attempt, s.started_at, s.duration_ms, s.http_status, s.error, s.response_body " \
	"    FROM s WHERE s.record_attempt AND $16), " \
	"qd AS (" \
	"  DELETE FROM aloro_webhook.queue q " \
	"   WHERE %s AND q.claimed_by = $17 " \
	"  RETURNING q.delivery_id), " \
	"qu AS (" \
	"  UPDATE aloro_webhook.queue q " \
	"     SET due_at = (SELECT s.next_attempt_at FROM s WHERE s.id = q.delivery_id), " \
	"         claimed_by = NULL, claimed_at = NULL " \
	"   WHERE %s AND q.claimed_by = $17 " \
	"  RETURNING q.delivery_id), "

/*
 * 0.3.0's tail.  A delivery the worker read from the stream (streamed) has
 * no queue row: when its first attempt succeeded, the attempt row says all
 * (the deliveries view derives the rest); otherwise it gets a
 * delivery_state row, and a queue row when it is to be tried again.  In
 * the state's upsert, an outcome without an attempt (a body that cannot be
 * sent, say) leaves attempts as they were, and then last_http_status too:
 * that is how the two are told apart there.
 */
#define AW_RECORD_TAIL \
	"qi AS (" \
	"  INSERT INTO aloro_webhook.queue (delivery_id, webhook_id, due_at, bytes) " \
	"  SELECT s.id, s.webhook_id, s.next_attempt_at, s.bytes FROM s " \
	"   WHERE s.streamed AND " AW_RECORD_RETRY " " \
	"  ON CONFLICT (delivery_id) DO NOTHING), " \
	"k AS (" \
	"  SELECT s.* FROM s " \
	"   WHERE s.streamed " \
	"      OR s.id = ANY (ARRAY(SELECT qd.delivery_id FROM qd UNION ALL SELECT qu.delivery_id FROM qu))), " \
	"st AS (" \
	"  INSERT INTO aloro_webhook.delivery_state AS d " \
	"         (delivery_id, status, attempts, budget_start, next_attempt_at, last_http_status, " \
	"          last_error, finished_at) " \
	"  SELECT k.id, CASE WHEN k.orphaned THEN 'failed' ELSE k.new_status END, k.attempt, k.budget_start, " \
	"         CASE WHEN k.orphaned THEN NULL ELSE k.next_attempt_at END, " \
	"         CASE WHEN k.record_attempt THEN k.http_status END, " \
	"         CASE WHEN k.orphaned THEN aloro_webhook._webhook_deleted_message(k.webhook_id, k.error) " \
	"              ELSE k.error END, " \
	"         CASE WHEN k.new_status = 'pending' AND NOT k.orphaned THEN NULL ELSE pg_catalog.now() END " \
	"    FROM k " \
	/* the stream's first attempt that succeeded: its attempt row says all */ \
	"   WHERE NOT (k.streamed AND k.new_status = 'succeeded' AND k.record_attempt AND $16) " \
	"  ON CONFLICT (delivery_id) DO UPDATE " \
	"     SET status = excluded.status, attempts = excluded.attempts, " \
	"         budget_start = excluded.budget_start, next_attempt_at = excluded.next_attempt_at, " \
	"         last_http_status = CASE WHEN excluded.attempts = d.attempts THEN d.last_http_status " \
	"                                 ELSE excluded.last_http_status END, " \
	"         last_error = excluded.last_error, finished_at = excluded.finished_at) " \
	"SELECT k.id FROM k"

/* 0.2.0's tail (until ALTER EXTENSION ... UPDATE): the state is in delivery_log */
#define AW_RECORD_TAIL_020 \
	"k AS (SELECT 1) " \
	"UPDATE aloro_webhook.delivery_log d " \
	"   SET status = CASE WHEN s.orphaned THEN 'failed' ELSE s.new_status END, " \
	"       attempts = CASE WHEN s.record_attempt THEN s.attempt ELSE d.attempts END, " \
	"       next_attempt_at = CASE WHEN s.orphaned THEN NULL ELSE s.next_attempt_at END, " \
	"       last_http_status = CASE WHEN s.record_attempt THEN s.http_status ELSE d.last_http_status END, " \
	"       last_error = CASE WHEN s.orphaned " \
	"                         THEN aloro_webhook._webhook_deleted_message(d.webhook_id, s.error) " \
	"                         ELSE s.error END, " \
	"       finished_at = CASE WHEN s.new_status = 'pending' AND NOT s.orphaned THEN NULL ELSE pg_catalog.now() END " \
	"  FROM s WHERE d.id = s.id " \
	"   AND d.id = ANY (ARRAY(SELECT qd.delivery_id FROM qd UNION ALL SELECT qu.delivery_id FROM qu)) " \
	"RETURNING d.id"

/* finished (or orphaned) ones leave the queue; retries stay, with their due time */
#define AW_RECORD_DONE "(s.new_status <> 'pending' OR s.orphaned)"
#define AW_RECORD_RETRY "(s.new_status = 'pending' AND NOT s.orphaned)"

static SPIPlanPtr
aw_record_plan(bool by_id)
{
	Oid			types[AW_RECORD_NARGS] = {INT8ARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID,
		INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		TIMESTAMPTZARRAYOID, BOOLARRAYOID, INT8ARRAYOID, TIDARRAYOID, BOOLARRAYOID, INT4ARRAYOID,
	INT4ARRAYOID, BOOLOID, INT8OID};
	SPIPlanPtr *plan = by_id ? &aw_plan_record_by_id : &aw_plan_record;

	if (*plan == NULL)
		*plan = aw_prepare(psprintf(aw_queue_schema() == 2 ? AW_RECORD_HEAD AW_RECORD_TAIL_020 :
									AW_RECORD_HEAD AW_RECORD_TAIL,
									by_id ?
									"q.delivery_id = ANY (ARRAY(SELECT s.id FROM s WHERE NOT s.streamed AND " AW_RECORD_DONE "))" :
									"q.ctid = ANY (ARRAY(SELECT s.claimed_ctid FROM s WHERE NOT s.streamed AND " AW_RECORD_DONE "))",
									by_id ?
									"q.delivery_id = ANY (ARRAY(SELECT s.id FROM s WHERE NOT s.streamed AND " AW_RECORD_RETRY "))" :
									"q.ctid = ANY (ARRAY(SELECT s.claimed_ctid FROM s WHERE NOT s.streamed AND " AW_RECORD_RETRY "))"),
						   AW_RECORD_NARGS, types);
	return *plan;
}

/*
 * The common batch -- every one read from the stream, its first attempt
 * succeeded -- is only its attempt rows.
 */
static bool
aw_record_all_sent(AwDelivery **ds, int n)
{
	for (int i = 0; i < n; i++)
		if (!ds[i]->streamed || !ds[i]->outcome.record_attempt ||
			strcmp(ds[i]->outcome.new_status, "succeeded") != 0)
			return false;
	return true;
}

static void
aw_record_sent(Datum *args)
{
	aw_prepare_once(&aw_plan_record_sent,
					"INSERT INTO aloro_webhook.delivery_attempts "
					"       (delivery_id, attempt, started_at, duration_ms, http_status, error, response_body) "
					"SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), "
					"                         pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), "
					"                         pg_catalog.unnest($7))",
					7, (Oid[]) {INT8ARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID,
					INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID});
	if (SPI_execute_plan(aw_plan_record_sent, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record delivery attempts");
}

static int
aw_int64_cmp(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/*
 * Records the outcomes of results[0..n): by the claimed row versions, then, one by one and
 * by id, whatever was not found that way.  Without with_attempts only the
 * deliveries' state is written, not the attempt rows.
 */
static void
aw_record_batch(AwDelivery **results, int n, bool with_attempts)
{
	Datum		args[AW_RECORD_NARGS];
	int64	   *found;
	uint64		nfound;

	aw_record_args(results, n, args);
	if (with_attempts && aw_record_all_sent(results, n))
	{
		aw_record_sent(args);
		return;
	}
	args[15] = BoolGetDatum(with_attempts);
	args[16] = Int64GetDatum(aw_record_token);
	if (SPI_execute_plan(aw_record_plan(false), args, NULL, false, 0) < 0)
		elog(ERROR, "could not record delivery attempts");
	nfound = SPI_processed;
	if (nfound == (uint64) n)
		return;

	found = palloc(sizeof(int64) * Max(nfound, 1));
	for (uint64 i = 0; i < nfound; i++)
	{
		bool		isnull;

		found[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	qsort(found, nfound, sizeof(int64), aw_int64_cmp);
	for (int i = 0; i < n; i++)
	{
		if (bsearch(&results[i]->id, found, nfound, sizeof(int64), aw_int64_cmp) != NULL)
			continue;
		aw_record_args(&results[i], 1, args);
		args[15] = BoolGetDatum(with_attempts);
		args[16] = Int64GetDatum(aw_record_token);
		if (SPI_execute_plan(aw_record_plan(true), args, NULL, false, 0) < 0)
			elog(ERROR, "could not record delivery attempts");
	}
}

/*
 * Errors that say nothing about the rows being written: a lock we waited
 * for too long, a cancel, a deadlock, a full disk.  Retrying the same rows
 * later is right; trying them one by one now is not.
 */
static bool
aw_error_is_transient(int sqlerrcode)
{
	switch (sqlerrcode)
	{
		case ERRCODE_LOCK_NOT_AVAILABLE:
		case ERRCODE_QUERY_CANCELED:
		case ERRCODE_T_R_DEADLOCK_DETECTED:
		case ERRCODE_T_R_SERIALIZATION_FAILURE:
		case ERRCODE_DISK_FULL:
		case ERRCODE_OUT_OF_MEMORY:
		case ERRCODE_INSUFFICIENT_RESOURCES:
		case ERRCODE_ADMIN_SHUTDOWN:
		case ERRCODE_CANNOT_CONNECT_NOW:
		case ERRCODE_READ_ONLY_SQL_TRANSACTION:
			return true;
		default:
			return false;
	}
}

/* what aw_record_guarded hands to its subtransaction */
typedef struct AwRecordArgs
{
	AwDelivery **results;
	int			n;
	bool		with_attempts;
} AwRecordArgs;

static void
aw_record_batch_arg(void *arg)
{
	AwRecordArgs *a = (AwRecordArgs *) arg;

	aw_record_batch(a->results, a->n, a->with_attempts);
}

/*
 * aw_record_guarded
 *		Records results[0..n) in a subtransaction.  On failure rolls it back,
 *		warns (with the hint failing) when failing is set, and returns false;
 *		a transient error (aw_error_is_transient) is thrown on.
 */
static bool
aw_record_guarded(AwDelivery **results, int n, bool with_attempts, const char *failing)
{
	AwRecordArgs a = {results, n, with_attempts};
	ErrorData  *edata = aw_try_in_subtransaction(aw_record_batch_arg, &a, aw_error_is_transient);

	if (edata == NULL)
		return true;
	if (failing != NULL)
		ereport(WARNING,
				(errmsg("aloro_webhook could not record attempt %d of delivery " INT64_FORMAT ": %s",
						results[0]->outcome.attempt, results[0]->id, edata->message),
				 errhint("%s", failing)));
	FreeErrorData(edata);
	return false;
}

/*
 * After a batch failed to record, batches are recorded with care (a
 * subtransaction, row by row on failure) until this long has passed.
 */
#define AW_RECORD_CAREFUL_MS 60000

/* until when batches are recorded with care (0: not) */
static TimestampTz aw_record_careful_until = 0;

/*
 * aw_queue_record
 *		Writes the outcome of finished requests.  The batch goes in one
 *		statement.  Usually nothing refuses it, and it runs as it is; when
 *		one did (an error fails the turn, which is retried), the batches of
 *		the next minute go inside a subtransaction: if that fails (say, a
 *		constraint a user added to the history table), each result is
 *		retried on its own so that one bad row cannot block or re-send the
 *		others; a result whose attempt row is refused still moves its
 *		delivery on (next attempt on schedule, or finished).  Transient
 *		errors (a lock timeout, a cancel) are thrown on: the caller retries
 *		the whole batch later.
 */
void
aw_queue_record(AwDelivery **results, int n, int64 token)
{
	TimestampTz now = GetCurrentTimestamp();

	if (n == 0)
		return;
	aw_record_token = token;
	if (now >= aw_record_careful_until)
	{
		/* should it fail, the turn is retried, carefully */
		aw_record_careful_until = now + (TimestampTz) AW_RECORD_CAREFUL_MS * 1000;
		aw_record_batch(results, n, true);
		aw_record_careful_until = 0;
		return;
	}
	if (n > 1 && aw_record_guarded(results, n, true, NULL))
		return;
	for (int i = 0; i < n; i++)
	{
		if (aw_record_guarded(&results[i], 1, true,
							  "The delivery's state is written without this attempt's row."))
			continue;
		/* the attempt row is what is refused: keep the delivery on schedule */
		aw_record_guarded(&results[i], 1, false,
						  "The delivery stays in flight until the worker restarts, and is then sent again.");
	}
}
