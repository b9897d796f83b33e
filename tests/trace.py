#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# trace.py -- W3C Trace Context over the wire: a valid traceparent's ids in
# the access-log line and in problem details, a malformed one ignored (TAP)
import json
import os
import re
import socket

from server import BIN, poll, recv_all, start_microd, stop_microd
from tap import done, ok

HOOKS = os.path.abspath(os.environ.get("MICROD_HOOKS_BIN", "build/hooks/microd"))

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def ask(port, path, headers):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n"
               % (path, "".join("%s: %s\r\n" % h for h in headers))).encode())
    data = recv_all(s)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.1 (\d{3})", head)
    return (int(m.group(1)) if m else None), body


def line_of(log, request_id):
    for line in open(log):
        if '"msg":"request"' in line and request_id in line:
            return json.loads(line)
    return None


def main():
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--log-format", "json"])
    if not ok(port is not None, "microd starts"):
        return done()
    tp = "00-%s-%s-01" % (TRACE, SPAN)
    st, body = ask(port, "/nope", [("traceparent", tp), ("X-Request-Id", "trace-valid")])
    j = json.loads(body or b"{}")
    ok(st == 404 and j.get("trace_id") == TRACE and j.get("request_id") == "trace-valid",
       "a valid traceparent: problem details carry its trace id beside the request id: %s" % j)
    line = poll(lambda: line_of(log, "trace-valid"), 5, 0.05)
    ok(line and line.get("trace_id") == TRACE and line.get("span_id") == SPAN and line.get("trace_flags") == "01",
       "  and the access-log line its trace_id, span_id and trace_flags: %s"
       % {k: (line or {}).get(k) for k in ("trace_id", "span_id", "trace_flags")})
    st, body = ask(port, "/version", [("traceparent", tp), ("X-Request-Id", "trace-ok")])
    line = poll(lambda: line_of(log, "trace-ok"), 5, 0.05)
    ok(st == 200 and line and line.get("trace_id") == TRACE, "  a 200's line too")
    for i, (value, why) in enumerate((("00-%s-%s-01" % (TRACE.upper(), SPAN), "uppercase hex"),
                       ("00-%s-%s-01" % ("0" * 32, SPAN), "an all-zero trace-id"),
                       ("ff-%s-%s-01" % (TRACE, SPAN), "version ff"),
                       ("00-%s-%s-01-x" % (TRACE, SPAN), "version 00 with more"))):
        rid = "trace-bad-%d" % i
        st, body = ask(port, "/nope", [("traceparent", value), ("X-Request-Id", rid)])
        j = json.loads(body or b"{}")
        line = poll(lambda: line_of(log, rid), 5, 0.05)
        ok(st == 404 and "trace_id" not in j and line and "trace_id" not in line and "span_id" not in line,
           "a traceparent with %s is ignored: no trace fields in the body or the log" % why)
    st, body = ask(port, "/nope", [("traceparent", tp), ("traceparent", tp), ("X-Request-Id", "trace-two")])
    j = json.loads(body or b"{}")
    line = poll(lambda: line_of(log, "trace-two"), 5, 0.05)
    ok(st == 404 and "trace_id" not in j and line and "trace_id" not in line,
       "two traceparent lines, even valid and equal ones, count as none (Level 1)")
    st, body = ask(port, "/nope", [("traceparent", tp + " \t"), ("X-Request-Id", "trace-ows")])
    j = json.loads(body or b"{}")
    ok(st == 404 and j.get("trace_id") == TRACE, "spaces and a tab after a valid value are not part of it")
    stop_microd(proc, log)

    # What a handler sees (the test build's /test/trace): tracestate only
    # beside a valid traceparent, and a child traceparent for its own calls.
    proc, port, log = start_microd([HOOKS, "--port", "0", "--bind", "127.0.0.1"])
    if not ok(port is not None, "the test build starts"):
        return done()
    st, body = ask(port, "/test/trace", [("traceparent", tp), ("tracestate", "congo=t61rcWkgMzE")])
    j = json.loads(body or b"{}")
    out = re.match(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$", j.get("outbound", ""))
    ok(st == 200 and j.get("trace_id") == TRACE and j.get("tracestate") == "congo=t61rcWkgMzE",
       "a handler gets the trace and its tracestate: %s" % j)
    ok(out and out.group(1) == TRACE and out.group(2) not in (SPAN, "0" * 16) and out.group(3) == "01",
       "  and its outbound traceparent keeps the trace-id and flags, with a span id of its own: %s"
       % j.get("outbound"))
    st, body = ask(port, "/test/trace", [("tracestate", "foo=1,bar=2"), ("traceparent", tp), ("tracestate", ""),
                                         ("tracestate", "rojo=1")])
    j = json.loads(body or b"{}")
    ok(st == 200 and j.get("tracestate") == "foo=1,bar=2,rojo=1",
       "tracestate lines are joined with ',', an empty one left out: %r" % j.get("tracestate"))
    st, body = ask(port, "/test/trace", [("traceparent", tp), ("tracestate", "a=1 \t"), ("tracestate", "b=2")])
    ok(st == 200 and json.loads(body or b"{}").get("tracestate") == "a=1,b=2",
       "  the spaces and tabs that end a line are dropped")
    long_state = "k=" + "v" * 510
    st, body = ask(port, "/test/trace", [("traceparent", tp), ("tracestate", long_state), ("tracestate", "b=2")])
    ok(st == 200 and json.loads(body or b"{}").get("tracestate") == long_state,
       "  512 characters are passed on whole (the handler's 513-byte buffer); the line after them left out")
    st, body = ask(port, "/test/trace", [("traceparent", "01-%s-%s-09" % (TRACE, SPAN))])
    j = json.loads(body or b"{}")
    ok(st == 200 and j.get("outbound", "").endswith("-01") and j.get("outbound", "").startswith("00-" + TRACE),
       "flags 09 from a later version go out as 01: only the sampled bit is passed on (%s)" % j.get("outbound"))
    st, body = ask(port, "/test/trace", [("traceparent", "00-%s-%s-01" % (TRACE.upper(), SPAN)),
                                         ("tracestate", "congo=t61rcWkgMzE")])
    j = json.loads(body or b"{}")
    out = re.match(r"00-([0-9a-f]{32})-([0-9a-f]{16})-00$", j.get("outbound", ""))
    ok(st == 200 and j.get("trace_id") is None and j.get("tracestate") is None,
       "beside an invalid traceparent, tracestate is dropped too: %s" % j)
    ok(out and out.group(1) not in (TRACE, "0" * 32), "  and an outbound request starts a new trace: %s"
       % j.get("outbound"))
    stop_microd(proc, log)
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
