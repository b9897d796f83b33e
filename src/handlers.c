/* SPDX-License-Identifier: MIT */
/* handlers.c -- one function per endpoint: request in, status + JSON out */
#include "handlers.h"

#include "reply.h"
#include "state.h"

void
handle_health(const struct request *req, struct reply *rep)
{
	(void)req;
	reply_json(rep, 200, json_pack("{s:s}", "status", "ok"));
}

void
handle_ready(const struct request *req, struct reply *rep)
{
	(void)req;
	if (state_get() == STATE_READY)
		reply_json(rep, 200, json_pack("{s:s}", "status", "ready"));
	else if (state_get() == STATE_STARTING)
		reply_json(rep, 503, json_pack("{s:s}", "status", "starting"));
	else
		reply_json(rep, 503, json_pack("{s:s}", "status", "draining"));
}

void
handle_echo(const struct request *req, struct reply *rep)
{
	reply_json(rep, 200, json_incref(req->body));
}
