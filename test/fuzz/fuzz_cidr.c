/*
 * libFuzzer harness: the CIDR parser of aloro_webhook.allowed_networks
 * (src/validate.c).  Invariants: no crash; a parsed block has a prefix of
 * 0..128 bits, an IPv4 one 96..128 and the IPv4-mapped form.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *text = malloc(size + 1);
	AwNetwork	net;

	memcpy(text, data, size);
	text[size] = '\0';
	if (aw_parse_cidr(text, &net))
	{
		if (net.prefix < 0 || net.prefix > 128)
			abort();
		if (strchr(text, ':') == NULL && (net.prefix < 96 || net.addr[10] != 0xff || net.addr[11] != 0xff))
			abort();
	}
	free(text);
	return 0;
}
