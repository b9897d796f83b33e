/* SPDX-License-Identifier: MIT */
/* handlers.c -- one function per endpoint: request in, status + JSON out */
#include "handlers.h"

#include "reply.h"

void
handle_health(const struct request *req, struct reply *rep)
{
	(void)req;
	reply_json(rep, 200, json_pack("{s:s}", "status", "ok"));
}

void
handle_echo(const struct request *req, struct reply *rep)
{
	reply_json(rep, 200, json_incref(req->body));
}
