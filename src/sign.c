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
