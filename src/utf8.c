/* SPDX-License-Identifier: MIT */
/* utf8.c -- UTF-8 validation for client-supplied strings */
#include "utf8.h"

#include <string.h>

size_t
utf8_seq_len(const unsigned char *s, size_t n)
{
	size_t len;
	unsigned int cp;

	if (n == 0)
		return 0;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1fu;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0fu;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07u;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3fu);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0; /* overlong, out of range, or a surrogate */
	return len;
}

void
utf8_sanitize(char *dst, size_t cap, const char *src)
{
	static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
	const unsigned char *s = (const unsigned char *)src;
	size_t n = strlen(src), i = 0, o = 0;

	if (cap == 0)
		return;
	while (i < n) {
		size_t k = utf8_seq_len(s + i, n - i);
		const char *piece = k > 0 ? src + i : replacement;
		size_t plen = k > 0 ? k : 3;

		if (o + plen >= cap)
			break;
		memcpy(dst + o, piece, plen);
		o += plen;
		i += k > 0 ? k : 1;
	}
	dst[o] = '\0';
}
