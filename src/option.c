/* SPDX-License-Identifier: MIT */
/* option.c -- one parser per kind of option value, driven by a table's rows */
#include "option.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "number.h"

int
option_bool(const char *s)
{
	if (strcmp(s, "1") == 0 || strcasecmp(s, "true") == 0 ||
	    strcasecmp(s, "yes") == 0)
		return 1;
	if (strcmp(s, "0") == 0 || strcasecmp(s, "false") == 0 ||
	    strcasecmp(s, "no") == 0)
		return 0;
	return -1;
}

/* A bound as errors write it: "3600", "0.01", "64k", "1 byte". */
static void
bound(char *out, size_t len, enum option_kind kind, uintmax_t v)
{
	if (kind == OPTION_SECONDS) {
		int n = snprintf(out, len, "%ju.%03ju", v / 1000, v % 1000);

		while (n > 1 && out[n - 1] == '0')
			out[--n] = '\0';
		if (n > 1 && out[n - 1] == '.')
			out[--n] = '\0';
		return;
	}
	for (unsigned int shift = 30; kind == OPTION_SIZE && v > 1 && shift > 0;
	     shift -= 10)
		if (v % ((uintmax_t)1 << shift) == 0) {
			snprintf(out, len, "%ju%c", v >> shift,
			         "kmg"[shift / 10 - 1]);
			return;
		}
	snprintf(out, len, "%ju%s", v,
	         kind == OPTION_SIZE && v == 1 ? " byte" : "");
}

const char *
option_accepts(const struct option *opt, char *out, size_t len)
{
	static const char *const nouns[] = {
	    [OPTION_UINT] = "an integer",
	    [OPTION_SIZE] = "a size",
	    [OPTION_SECONDS] = "seconds",
	};
	char lo[32], hi[32];

	if (opt->kind == OPTION_BOOL)
		return "true or false (also 1/0, yes/no; any case)";
	if (opt->kind > OPTION_SECONDS)
		return opt->accepts;
	bound(lo, sizeof(lo), opt->kind, opt->min);
	bound(hi, sizeof(hi), opt->kind, opt->max);
	snprintf(out, len, "%s from %s to %s%s",
	         opt->noun != NULL ? opt->noun : nouns[opt->kind], lo, hi,
	         opt->accepts != NULL ? opt->accepts : "");
	return out;
}

/* "WHAT: invalid value 'VALUE' (expected ...)", or with why instead of
 * what the option expects: the rule the value broke. -1. */
static int
refuse(char *err, size_t errlen, const char *what, const char *value,
       const struct option *opt, const char *why)
{
	char shown[80], accepts[160];
	size_t n = 0;
	const unsigned char *p = (const unsigned char *)value;
	const char *cut;

	/* The value as printable ASCII, bounded: the error stays one line,
	 * with no byte that could pose as a journald priority or break the
	 * JSON of a refusal. */
	for (; *p != '\0' && n + 5 < sizeof(shown); p++) {
		if (*p >= 0x20 && *p < 0x7f && *p != '\\')
			shown[n++] = (char)*p;
		else
			n += (size_t)snprintf(shown + n, sizeof(shown) - n,
			                      "\\x%02x", *p);
	}
	shown[n] = '\0';
	cut = *p != '\0' ? "..." : "";
	if (opt->secret) { /* a password is no part of an error */
		snprintf(shown, sizeof(shown), "(not shown)");
		cut = "";
	}
	if (why != NULL)
		snprintf(err, errlen, "%s: invalid value '%s%s': %s", what,
		         shown, cut, why);
	else
		snprintf(err, errlen, "%s: invalid value '%s%s' (expected %s)",
		         what, shown, cut,
		         option_accepts(opt, accepts, sizeof(accepts)));
	return -1;
}

/*
 * Gives add each word of s, words separated by blanks or newlines (a
 * variable's form, as a YAML block leaves it): 0, or -1 with err naming the
 * word that broke a rule, or all of s when it holds no word.
 */
static int
each_word(void *base, const struct option *opt, const char *what, const char *s,
          char *err, size_t errlen)
{
	char word[OPTION_WORD_MAX];
	const char *why, *p = s;
	int any = 0;

	for (;;) {
		size_t n;

		p += strspn(p, " \t\r\n");
		n = strcspn(p, " \t\r\n");
		if (n == 0)
			return any ? 0
			           : refuse(err, errlen, what, s, opt,
			                    opt->none);
		snprintf(word, sizeof(word), "%.*s", (int)n, p);
		if (opt->add(base, word, n, &why) != 0)
			return refuse(err, errlen, what, word, opt, why);
		any = 1;
		p += n;
	}
}

/* Stores v in an unsigned int or a size_t field, as its size says. */
static void
store(void *field, size_t size, uintmax_t v)
{
	unsigned int u = (unsigned int)v;
	size_t z = (size_t)v;

	memcpy(field, size == sizeof(z) ? (void *)&z : (void *)&u, size);
}

int
option_parse(void *base, const struct option *opt, const char *what,
             const char *s, char *err, size_t errlen)
{
	unsigned char addr[sizeof(struct in6_addr)];
	char *field = (char *)base + opt->off;
	unsigned int ms;
	uintmax_t v;
	int n;

	switch (opt->kind) {
	case OPTION_UINT:
		if (number_parse(s, opt->max, &v) != 0 || v < opt->min)
			goto bad;
		break;
	case OPTION_SIZE:
		if (number_parse_size(s, opt->min, opt->max, &v) != 0)
			goto bad;
		break;
	case OPTION_SECONDS:
		if (number_parse_seconds(s, (unsigned int)(opt->max / 1000),
		                         &ms) != 0 ||
		    ms < opt->min)
			goto bad;
		v = ms;
		break;
	case OPTION_BOOL:
	case OPTION_WORD:
		n = opt->kind == OPTION_BOOL ? option_bool(s) : opt->word(s);
		if (n < 0)
			goto bad;
		v = (uintmax_t)n;
		break;
	case OPTION_ADDRESS:
		if (inet_pton(AF_INET, s, addr) != 1 &&
		    inet_pton(AF_INET6, s, addr) != 1)
			goto bad;
		memcpy(field, (const void *)&s, sizeof(s)); /* kept as given */
		return 0;
	case OPTION_STRING:
		if (*s == '\0' || strlen(s) >= opt->max)
			goto bad;
		memcpy(field, (const void *)&s, sizeof(s));
		return 0;
	case OPTION_LIST:
	default:
		return each_word(base, opt, what, s, err, errlen);
	}
	store(field, opt->size, v);
	return 0;
bad:
	return refuse(err, errlen, what, s, opt, NULL);
}
