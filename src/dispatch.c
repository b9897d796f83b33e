/* SPDX-License-Identifier: MIT */
/* dispatch.c -- a whole request to its reply: JSON body, handler, checks */
#include "dispatch.h"

#include <strings.h>

#include "log.h"
#include "policy.h"
#include "reply.h"

int
dispatch_is_json(const char *ct)
{
	static const char type[] = "application/";
	size_t n;

	if (ct == NULL || strncasecmp(ct, type, sizeof(type) - 1) != 0)
		return 0;
	ct += sizeof(type) - 1;
	n = strcspn(ct, "; \t"); /* the subtype */
	/* json, or a +json subtype (RFC 6839): merge-patch+json */
	return (n == 4 && strncasecmp(ct, "json", 4) == 0) ||
	       (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0);
}

int
dispatch_json(const char *body, size_t len, json_t **out, struct reply *rep)
{
	struct policy_verdict v = policy_json_cost(body, len);
	json_error_t jerr;

	*out = NULL;
	if (v.status != 0) {
		reply_error(rep, v.status, "%s", v.detail);
		return -1;
	}
	/* "\u0000" is valid JSON: parsed, and refused by the shapes that
	 * cannot hold it (validate.c) with its pointer, not as malformed.
	 * A key given twice is refused here, with its position. */
	*out = json_loadb(
	    body != NULL ? body : "", len,
	    JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
	if (*out != NULL)
		return 0;
	reply_error(rep, 400, "invalid JSON at line %d, column %d: %s",
	            jerr.line, jerr.column, jerr.text);
	return -1;
}

void
dispatch_run(const struct route *rt, const struct request *req,
             struct reply *rep)
{
	rt->handler(req, rep);
	if (rep->status >= 200 && rep->status <= 599 &&
	    (rep->body != NULL || rep->text != NULL))
		return;
	log_error("%s %s: the handler answered %s %u; sent 500 instead",
	          rt->method, rt->path,
	          rep->body != NULL || rep->text != NULL ? "status"
	                                                 : "no body, status",
	          rep->status);
	reply_release(rep);
	reply_error(rep, 500, "the handler gave no valid reply");
}
