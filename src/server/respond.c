/* SPDX-License-Identifier: MIT */
/* respond.c -- the request a handler sees; the reply as an MHD response */
#include "internal.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "log.h"
#include "middleware.h"
#include "reply.h"

/* Replies up to this size are rendered on the stack, larger ones on the heap.
 */
#define RENDER_STACK 2048

/* The client's address, as handlers and the log see it: "" when unknown. */
static void
peer_of(struct MHD_Connection *conn, char *buf, size_t len)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;

	buf[0] = '\0';
	if (sa == NULL)
		return;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
		          buf, (socklen_t)len);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
		          &((const struct sockaddr_in6 *)sa)->sin6_addr, buf,
		          (socklen_t)len);
	else if (sa->sa_family == AF_UNIX)
		snprintf(buf, len, "unix");
}

/* ex->peer, worked out the first time it is asked for. */
const char *
exchange_peer(struct exchange *ex)
{
	if (ex->peer[0] == '\0' && ex->conn != NULL)
		peer_of(ex->conn, ex->peer, sizeof(ex->peer));
	return ex->peer;
}

/* The request view's lookup on the connection's own thread. */
const char *
lookup_field(void *ctx, enum request_field field, const char *name)
{
	struct exchange *ex = ctx;

	if (field == REQUEST_PEER)
		return exchange_peer(ex);
	return MHD_lookup_connection_value(
	    ex->conn,
	    field == REQUEST_HEADER ? MHD_HEADER_KIND : MHD_GET_ARGUMENT_KIND,
	    name);
}

enum MHD_Result
each_value(void *cls, enum MHD_ValueKind kind, const char *key,
           const char *value)
{
	struct each_arg *a = cls;

	(void)kind;
	if (strcasecmp(key, a->name) == 0) /* as the lookup compares */
		a->fn(a->arg, value);
	return MHD_YES;
}

/* The request view's each() on the connection's own thread. */
void
each_field(void *ctx, enum request_field field, const char *name,
           void (*fn)(void *, const char *), void *arg)
{
	struct exchange *ex = ctx;
	struct each_arg a = {name, fn, arg};

	MHD_get_connection_values(
	    ex->conn,
	    field == REQUEST_HEADER ? MHD_HEADER_KIND : MHD_GET_ARGUMENT_KIND,
	    each_value, &a);
}

/* Never written; non-const only because MHD's buffer argument is. */
static char fallback_500[] =
    "{\"type\":\"about:blank\",\"title\":\"Internal Server Error\","
    "\"status\":500,\"detail\":\"the reply could not be rendered\"}\n";

static struct MHD_Response *
response_from_reply(const struct reply *rep, size_t *len)
{
	char stack[RENDER_STACK], *heap = NULL;
	struct MHD_Response *resp;
	size_t need;

	if (reply_render(rep, stack, sizeof(stack), &need) != 0)
		return NULL;
	*len = need;
	if (need <= sizeof(stack)) /* an empty body too: Content-Length: 0 */
		return MHD_create_response_from_buffer(need, stack,
		                                       MHD_RESPMEM_MUST_COPY);
	heap = malloc(need);
	if (heap == NULL)
		return NULL;
	if (reply_render(rep, heap, need, len) != 0 || *len != need) {
		free(heap);
		return NULL;
	}
	resp =
	    MHD_create_response_from_buffer(need, heap, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL)
		free(heap); /* not taken over */
	return resp;
}

/* The fields the before-handler chain asked for: 0, or -1 when one was
 * refused. */
static int
add_chain_fields(struct MHD_Response *resp, const struct middleware_fields *f)
{
	if (f->ratelimit[0] != '\0' &&
	    (MHD_add_response_header(resp, "RateLimit-Policy",
	                             f->ratelimit_policy) != MHD_YES ||
	     MHD_add_response_header(resp, "RateLimit", f->ratelimit) !=
	         MHD_YES))
		return -1;
	if (f->www_authenticate[0] != '\0' &&
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
	                            f->www_authenticate) != MHD_YES)
		return -1;
	return 0;
}

/*
 * The one place a reply becomes an HTTP response. Consumes rep's body.
 * close_after asks the client to go: the request was not read to its end.
 */
enum MHD_Result
send_reply(struct server *srv, struct MHD_Connection *conn, struct exchange *ex,
           struct reply *rep, int close_after)
{
	struct MHD_Response *resp;
	enum MHD_Result ret = MHD_NO;
	unsigned int status = rep->status;
	const char *type = reply_content_type(rep);

	/* Every problem names its request, and its trace when one came, so
	 * a report can be traced. */
	if (rep->problem && rep->body != NULL) {
		json_object_set_new(rep->body, "request_id",
		                    json_string(ex->request_id));
		if (ex->trace.trace_id[0] != '\0')
			json_object_set_new(rep->body, "trace_id",
			                    json_string(ex->trace.trace_id));
	}
	resp = response_from_reply(rep, &ex->bytes);
	if (resp == NULL) {
		log_error("%s: cannot render a %u reply", __func__, status);
		status = 500;
		type = "application/problem+json";
		ex->bytes = sizeof(fallback_500) - 1;
		resp = MHD_create_response_from_buffer(ex->bytes, fallback_500,
		                                       MHD_RESPMEM_PERSISTENT);
		if (resp == NULL)
			goto out;
	}
	/* A 204 or a 304 has no content, so no type for it: whatever the
	 * handler set, none is sent. */
	if ((status != MHD_HTTP_NO_CONTENT && status != MHD_HTTP_NOT_MODIFIED &&
	     MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	                             type) != MHD_YES) ||
	    MHD_add_response_header(resp, "X-Request-Id", ex->request_id) !=
	        MHD_YES)
		goto out;
	/* The handler's own fields (checked by reply_header), then microd's
	 * defaults for what it did not set. */
	for (size_t i = 0; i < rep->n_headers; i++)
		if (MHD_add_response_header(resp, rep->headers[i].name,
		                            rep->headers[i].value) != MHD_YES)
			log_warn("%s: libmicrohttpd refused the handler's %s "
			         "field; sent without it",
			         __func__, rep->headers[i].name);
	if (!reply_has_header(rep, MHD_HTTP_HEADER_CACHE_CONTROL) &&
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
	                            "no-store") != MHD_YES)
		goto out;
	if (rep->retry_after > 0 &&
	    !reply_has_header(rep, MHD_HTTP_HEADER_RETRY_AFTER)) {
		char secs[16];

		snprintf(secs, sizeof(secs), "%u", rep->retry_after);
		if (MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER,
		                            secs) != MHD_YES)
			goto out;
	}
	if (rep->allow[0] != '\0' &&
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, rep->allow) !=
	        MHD_YES)
		goto out;
	if (ex->fields != NULL && add_chain_fields(resp, ex->fields) != 0)
		goto out;
	if ((close_after || atomic_load(&srv->draining)) &&
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION,
	                            "close") != MHD_YES)
		goto out;
	ret = MHD_queue_response(conn, status, resp);
	if (ret == MHD_YES)
		ex->status = status;
out:
	if (resp != NULL)
		MHD_destroy_response(resp); /* MHD keeps its own reference */
	reply_release(rep);
	return ret;
}

enum MHD_Result
send_error(struct server *srv, struct MHD_Connection *conn, struct exchange *ex,
           unsigned int status, int close_after, const char *detail)
{
	struct reply rep = {0};

	reply_error(&rep, status, "%s", detail);
	return send_reply(srv, conn, ex, &rep, close_after);
}

enum MHD_Result
send_busy(struct server *srv, struct MHD_Connection *conn, struct exchange *ex)
{
	struct reply rep = {0};

	reply_error(&rep, 503,
	            "too many request bodies are being read at once; retry");
	rep.retry_after = 1;
	return send_reply(srv, conn, ex, &rep, 1);
}

/* What the handler sees; the lookup and body are the caller's to set. */
void
request_view(struct exchange *ex, const char *method, struct request *req)
{
	const struct route *rt = ex->res.route;

	/* The route's own string: it outlives the connection. */
	req->method = strcmp(method, "HEAD") == 0 ? "HEAD" : rt->method;
	req->path = ex->path;
	req->id = ex->request_id;
	req->trace = ex->trace.trace_id[0] != '\0' ? &ex->trace : NULL;
	req->app = ex->app;
	req->runtime = ex->runtime;
	req->params = &ex->res.params;
	if (rt->flags & ROUTE_RAW_BODY) {
		req->raw = ex->body != NULL ? ex->body : "";
		req->raw_len = ex->len;
	}
}
