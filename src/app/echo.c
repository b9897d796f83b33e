/* SPDX-License-Identifier: MIT */
/* echo.c -- POST /echo: the JSON body back, as sent */
#include "handlers.h"

#include "reply.h"

void
handle_echo(const struct request *req, struct reply *rep)
{
	reply_json(rep, 200, json_incref(req->body));
}
