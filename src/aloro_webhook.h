/*-------------------------------------------------------------------------
 * aloro_webhook.h
 *		Declarations shared by the files of the aloro_webhook extension.
 *
 * IDENTIFICATION
 *		src/aloro_webhook.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_H
#define ALORO_WEBHOOK_H

#include "postgres.h"

#include <sys/socket.h>

#include "lib/stringinfo.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "executor/spi.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"

#define AW_VERSION "0.3.0"
#define AW_USER_AGENT "aloro-webhook/" AW_VERSION
#define AW_WORKER_NAME "aloro_webhook worker"

/* settings (settings.c) */
extern void aw_define_settings(void);
extern char *aw_database_name;
extern char *aw_retry_schedule;
extern int	aw_timeout_ms;
extern char *aw_ca_file;
extern char *aw_allowed_networks;
extern int	aw_max_in_flight;
extern int	aw_max_in_flight_per_webhook;
extern int	aw_response_body_limit;
extern int	aw_idle_check_ms;
extern int	aw_batch_size;
extern int	aw_max_payload_size;
extern int	aw_max_in_flight_bytes;
extern bool aw_copy_ends_calls;
extern int	aw_retention_s;
extern int	aw_failed_retention_s;
extern int	aw_disable_after_failures;
extern double aw_retry_jitter;
extern int	aw_max_retry_after_s;
extern char *aw_proxy;
extern int	aw_workers;

/* shmem.c: the shared segment: the running workers, and what they are told */
#define AW_MAX_WORKERS 32
extern void aw_install_shmem_hooks(void);
extern bool aw_shmem_attached(void);
extern void aw_worker_register(int64 token);
extern int	aw_live_worker_tokens(int64 *out, bool include_self);
extern void aw_worker_share(int *count, int *index);
extern void aw_wake_workers(void);
extern bool aw_database_missing(void);
extern void aw_set_database_missing(bool missing);
extern TimestampTz aw_take_rewind(void);
extern void aw_publish_due(TimestampTz due);
extern uint64 aw_webhooks_version(void);
extern void aw_bump_webhooks_version(void);

/* wakeup.c: what a commit tells the workers and the backends' copies of webhooks */
extern void aw_install_xact_callback(void);
extern void aw_wake_worker_at_commit(void);
extern void aw_wake_worker_for(TimestampTz due);
extern void aw_wake_if_webhooks_change(uint64 seen);
extern void aw_set_am_worker(void);
extern bool aw_webhooks_changed_here(void);
extern void aw_after_commit_prepared(void);

/* schedule.c: aloro_webhook.retry_schedule */
typedef struct AwSchedule
{
	int			nentries;
	int64		delay_ms[FLEXIBLE_ARRAY_MEMBER];
} AwSchedule;
extern bool aw_check_retry_schedule(char **newval, void **extra, GucSource source);
extern void aw_assign_retry_schedule(const char *newval, void *extra);
extern const AwSchedule *aw_current_schedule(void);
struct AwOutcome;
extern void aw_schedule_next(struct AwOutcome *o, int budget_start);

/* json_out.c (and json_bytes.h): JSON exactly as JavaScript's JSON.stringify prints it */
#include "json_bytes.h"
extern void aw_json_string(StringInfo out, const char *s, int len);
extern void aw_json_cstring(StringInfo out, const char *s);
extern void aw_json_numeric_text(StringInfo out, const char *num);
extern void aw_json_jsonb(StringInfo out, JsonbContainer *jc);
extern void aw_json_jsonb_value(StringInfo out, JsonbValue *v);
extern void aw_json_jsonb_object_with(StringInfo out, JsonbContainer *jc,
									  const char *extra_key, const char *extra_json);
extern void aw_json_utc(StringInfo out, TimestampTz ts);
extern bool aw_format_utc(StringInfo out, TimestampTz ts);

/* row.c: the columns of a calls row, read by name */
typedef struct AwRow
{
	TupleDesc	tupdesc;
	HeapTuple	tuple;
} AwRow;
extern char *aw_value_text(Datum value, Oid type);
extern char *aw_row_text(AwRow *row, const char *name);
extern bool aw_row_double(AwRow *row, const char *name, double *result);
extern bool aw_row_time(AwRow *row, const char *name, TimestampTz *result);
extern Jsonb *aw_row_jsonb(AwRow *row, const char *name);
extern bool aw_row_has_column(TupleDesc tupdesc, const char *name);
extern void aw_row_check_types(TupleDesc tupdesc, const char *table);
extern const char *aw_row_column_being_read(void);
extern void aw_row_reset_reading(void);

/* payload.c: call row -> body */
extern char *aw_build_payload(AwRow *row, bool include_recording,
							  TimestampTz queued_at);
extern char *aw_payload_error_message(const char *column, const char *why);
extern char *aw_payload_too_large(int64 bytes);
extern char *aw_build_test_payload(int64 delivery_id, TimestampTz at);

/* statuses.c: live and terminal call statuses */
extern bool aw_status_is_terminal(const char *status);
extern bool aw_status_is_live(const char *status);

/* schema.c: which version's tables this database has */
extern int	aw_schema_version(void);

/* watch.c: the tables watch() attached the triggers to */
extern Oid	aw_watched_table(Relation rel);

/* utility.c: the ProcessUtility hook */
extern void aw_install_utility_hook(void);
extern bool aw_copy_loading(Relation rel);
extern bool aw_citus_carries_dml(void);

/* sign.c */
extern void aw_hmac_sha256_hex(const char *key, int keylen,
							   const char *msg, int msglen, char *out_hex);
extern bool aw_standard_key(const char *secret, unsigned char **key, int *keylen);
extern char *aw_standard_signature(const char *secret, const char *msg_id,
								   const char *timestamp, const char *body, size_t body_len);

/* url.c */
#define AW_URL_PASSWORD_MASK "***"
extern char *aw_url_masked(const char *url);
extern char *aw_url_with_password(const char *url, const char *password);
extern bool aw_check_allowed_networks(char **newval, void **extra, GucSource source);
extern void aw_assign_allowed_networks(const char *newval, void *extra);
extern bool aw_address_allowed(const struct sockaddr *sa, char *why, size_t whylen);

/* worker.c */
extern PGDLLEXPORT void aw_worker_main(Datum main_arg);

#endif							/* ALORO_WEBHOOK_H */
