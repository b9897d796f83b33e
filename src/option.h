/* SPDX-License-Identifier: MIT */
/* option.h -- one parser per kind of option value, driven by a table's rows */
#ifndef MICROD_OPTION_H
#define MICROD_OPTION_H

#include <stddef.h>
#include <stdint.h>

/* How a value is read, checked and stored. The three ranges come first. */
enum option_kind {
	OPTION_UINT,    /* an integer in [min, max] */
	OPTION_SIZE,    /* bytes, k/m/g suffix or none, in [min, max] */
	OPTION_SECONDS, /* three decimals at most: milliseconds in [min, max] */
	OPTION_BOOL,    /* a switch: true/false, 1/0, yes/no, any case */
	OPTION_WORD,    /* one of a few words, numbered by word() */
	OPTION_ADDRESS, /* a numeric IPv4 or IPv6 address, kept as given */
	OPTION_STRING,  /* kept as given: not empty, shorter than max bytes */
	OPTION_LIST,    /* words separated by blanks, each given to add() */
};

/* Room for a list's word: one longer is passed to add() cut. */
#define OPTION_WORD_MAX 1024

/*
 * Adds a list's word, n bytes long as given, to the settings at base: 0, or
 * -1 with *why the rule it broke (a static string).
 */
typedef int option_add_fn(void *base, const char *word, size_t n,
                          const char **why);

/* One row of an option table: the flag, its variable, and its field. */
struct option {
	const char *flag; /* without the leading "--" */
	const char *env;
	const char *metavar; /* NULL for a switch */
	const char *help;
	const char *dflt; /* the default, as a value; NULL: 0, off or none */
	enum option_kind kind;
	size_t off, size;    /* the field: unsigned int, size_t or a string */
	uintmax_t min, max;  /* bounds, in the kind's unit */
	const char *noun;    /* a range's, for the kind's ("an integer") */
	const char *accepts; /* what is accepted; after a range, the rest */
	const char *alt_env; /* consulted when env is unset */
	int link;            /* env may be a service link, which is no value */
	int (*word)(const char *); /* OPTION_WORD: its number, or -1 */
	option_add_fn *add;        /* OPTION_LIST */
	const char *none;          /* OPTION_LIST: why no word is refused */
	int secret; /* the value is never shown: it may hold a password */
};

#define OPTION_FIELD(type, f)                                                  \
	.off = offsetof(type, f), .size = sizeof(((type *)NULL)->f)

/* 1 for true, yes or 1; 0 for false, no or 0 (any case); else -1. */
int option_bool(const char *s);

/*
 * Reads s as opt's kind into its field of the settings at base, a list's
 * words added one by one: 0, or -1 with err set to one line naming what
 * (the flag or variable), the value, and what opt accepts or the rule the
 * value broke. A string is kept as the pointer s.
 */
int option_parse(void *base, const struct option *opt, const char *what,
                 const char *s, char *err, size_t errlen);

/* What opt accepts ("an integer from 1 to 256"), in out or static. */
const char *option_accepts(const struct option *opt, char *out, size_t len);

#endif
