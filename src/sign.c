/*-------------------------------------------------------------------------
 * sign.c
 *		HMAC-SHA256 signatures and signing secrets (OpenSSL).
 *
 * IDENTIFICATION
 *		src/sign.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "lib/stringinfo.h"
#include "fmgr.h"
#include "utils/builtins.h"

/* lowercase hex HMAC-SHA256(key, msg) into out_hex (65 bytes) */
void
aw_hmac_sha256_hex(const char *key, int keylen, const char *msg, int msglen,
				   char *out_hex)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;

	if (HMAC(EVP_sha256(), key, keylen, (const unsigned char *) msg, msglen,
			 mac, &maclen) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute HMAC-SHA256")));
	for (unsigned int i = 0; i < maclen; i++)
	{
		out_hex[2 * i] = hex[mac[i] >> 4];
		out_hex[2 * i + 1] = hex[mac[i] & 0x0f];
	}
	out_hex[2 * maclen] = '\0';
}

PG_FUNCTION_INFO_V1(aloro_webhook_sign);

/* sign(body, secret) = 'sha256=' || lowercase hex HMAC-SHA256(secret, body) */
Datum
aloro_webhook_sign(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	text	   *secret = PG_GETARG_TEXT_PP(1);
	char		result[7 + 64 + 1];

	memcpy(result, "sha256=", 7);
	aw_hmac_sha256_hex(VARDATA_ANY(secret), VARSIZE_ANY_EXHDR(secret),
					   VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), result + 7);
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

PG_FUNCTION_INFO_V1(aloro_webhook_generate_secret);

/* generate_secret() = 'whsec_' || base64 of 32 random bytes */
Datum
aloro_webhook_generate_secret(PG_FUNCTION_ARGS)
{
	unsigned char raw[32];
	char		result[6 + 44 + 1];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for a secret")));
	memcpy(result, "whsec_", 6);
	EVP_EncodeBlock((unsigned char *) result + 6, raw, sizeof(raw));
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

/*
 * aw_standard_key
 *		The signing key of a Standard Webhooks secret: the bytes that the
 *		base64 after "whsec_" encodes, palloc'd into *key.  False when the
 *		secret is not "whsec_" followed by padded, non-empty base64.
 */
bool
aw_standard_key(const char *secret, unsigned char **key, int *keylen)
{
	const char *b64;
	size_t		len;
	int			pad = 0;
	int			n;

	if (secret == NULL || strncmp(secret, "whsec_", 6) != 0)
		return false;
	b64 = secret + 6;
	len = strlen(b64);
	if (len == 0 || len % 4 != 0 || len > 4096)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		char		c = b64[i];

		if (c == '=' && i >= len - 2)
		{
			pad++;
			continue;
		}
		if (pad > 0 || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
						 (c >= '0' && c <= '9') || c == '+' || c == '/'))
			return false;
	}
	*key = palloc(len / 4 * 3 + 1);
	n = EVP_DecodeBlock(*key, (const unsigned char *) b64, (int) len);
	if (n < 0 || n - pad <= 0)
		return false;
	*keylen = n - pad;
	return true;
}

/*
 * aw_standard_signature
 *		"v1,<base64 HMAC-SHA256(key, id.timestamp.body)>" for a Standard
 *		Webhooks secret, palloc'd; NULL if the secret is not one.
 */
char *
aw_standard_signature(const char *secret, const char *msg_id, const char *timestamp,
					  const char *body, size_t body_len)
{
	unsigned char *key;
	int			keylen;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	StringInfoData msg;
	char	   *out;
	unsigned char *ok;

	if (!aw_standard_key(secret, &key, &keylen))
		return NULL;
	/* what is signed: "<id>.<timestamp>.<body>" */
	initStringInfo(&msg);
	appendStringInfo(&msg, "%s.%s.", msg_id, timestamp);
	appendBinaryStringInfo(&msg, body, (int) body_len);
	ok = HMAC(EVP_sha256(), key, keylen, (const unsigned char *) msg.data, msg.len, mac, &maclen);
	explicit_bzero(key, keylen);
	pfree(key);
	pfree(msg.data);
	if (ok == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute HMAC-SHA256")));
	out = palloc(3 + 4 * ((maclen + 2) / 3) + 1);
	memcpy(out, "v1,", 3);
	EVP_EncodeBlock((unsigned char *) out + 3, mac, maclen);
	return out;
}
