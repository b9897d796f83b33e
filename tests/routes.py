#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# routes.py -- what handlers get and give, over the wire: path parameters,
# the request view, reply headers, per-route body limits, the application's
# life cycle, and the handler pool for blocking routes (TAP)
#
# Every check drives the real binary on 127.0.0.1 with raw sockets; each load
# is a handful of requests, bounded in time.
import json
import os
import re
import socket
import threading
import time

from server import BIN, free_port, poll, readme_code, recv_all, start_microd, stop_microd, wait_exit
from tap import done, ok

HOOKS = os.path.abspath(os.environ.get("MICROD_HOOKS_BIN", "build/hooks/microd"))


def request(port, method, path, headers=(), body=None, timeout=10):
    """One request on a new connection: (status or None, {lower-case name:
    value}, body bytes, seconds)."""
    t0 = time.monotonic()
    head = "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" % (method, path)
    for h in headers:
        head += h + "\r\n"
    if body is not None:
        head += "Content-Length: %d\r\n" % len(body)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.settimeout(timeout)
        s.sendall(head.encode() + b"\r\n" + (body or b""))
        got = recv_all(s)
        s.close()
    except OSError:
        return None, {}, b"", time.monotonic() - t0
    took = time.monotonic() - t0
    m = re.match(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n", got)
    if not m:
        return None, {}, got, took
    head_end = got.find(b"\r\n\r\n")
    fields = {}  # a field sent twice has both values, a newline between
    for line in got[m.end():head_end].split(b"\r\n"):
        name, _, value = line.partition(b":")
        name, value = name.decode().lower(), value.strip().decode()
        fields[name] = fields[name] + "\n" + value if name in fields else value
    return int(m.group(1)), fields, got[head_end + 4:], took


def detail(body):
    try:
        return json.loads(body).get("detail")
    except ValueError:
        return None


def read_log(log):
    with open(log) as f:
        return f.read()


def log_index(text, needle):
    i = text.find(needle)
    return i if i >= 0 else None


def test_params(port):
    st, h, b, _ = request(port, "GET", "/status/404")
    ok(st == 404 and detail(b) == "status 404, as asked" and json.loads(b)["title"] == "Not Found",
       "GET /status/404: the handler's 404, titled from the status table")
    st, _, b, _ = request(port, "GET", "/status/%34%30%39")
    ok(st == 409 and detail(b) == "status 409, as asked" and json.loads(b)["title"] == "Conflict",
       "a percent-encoded parameter is decoded: /status/%34%30%39 is 409 Conflict")
    st, _, b, _ = request(port, "GET", "/status/4%2F4")
    ok(st == 400 and detail(b) == "path parameter code: an encoded '/' (%2F) is not allowed in it",
       "an encoded '/' in a parameter is 400, naming the parameter and the rule")
    st, _, b, _ = request(port, "GET", "/notes/a%2Fb")
    ok(st == 400 and detail(b) == "path parameter id: an encoded '/' (%2F) is not allowed in it",
       "  the same on another route: the raw path is split before decoding")
    st, _, b, _ = request(port, "GET", "/status/200/")
    ok(st == 404 and detail(b) == "no route for GET /status/200/",
       "a trailing slash is another path: 404")
    st, _, b, _ = request(port, "GET", "/status//200")
    ok(st == 404 and detail(b) == "no route for GET /status//200", "an empty segment too")
    st, _, b, _ = request(port, "GET", "/status/")
    ok(st == 404 and detail(b) == "no route for GET /status/",
       "a parameter never matches an empty segment")
    st, h, b, _ = request(port, "POST", "/status/200", body=b"")
    ok(st == 405 and h.get("allow") == "GET, HEAD" and detail(b) == "POST is not allowed on /status/200",
       "405 with Allow on a parameter route")
    st, h, b, _ = request(port, "PUT", "/notes/x", body=b"")
    ok(st == 405 and h.get("allow") == "GET, HEAD, PATCH, DELETE",
       "Allow lists every method of the template: %r" % h.get("allow"))
    st, h, b, _ = request(port, "HEAD", "/status/200")
    ok(st == 200 and b == b"" and h.get("content-length") not in (None, "0"),
       "HEAD is served by the GET route, without the body")
    st, _, b, _ = request(port, "GET", "/status/99")
    ok(st == 400 and detail(b) == "code must be an integer from 100 to 599", "/status/99 is refused by the handler")
    st, _, b, _ = request(port, "GET", "/status/101")
    ok(st == 400 and detail(b) == "101 is informational: a 1xx status cannot end a request",
       "/status/101 too: a 1xx cannot end a request")
    st, h, b, _ = request(port, "GET", "/status/204")
    ok(st == 204 and b == b"", "/status/204 goes out without a body")
    st, h, b, _ = request(port, "GET", "/status/304")
    ok(st == 304 and b == b"" and h.get("content-length") not in (None, "0"),
       "/status/304 too, with the Content-Length of the body it would have (RFC 9110 8.6): %r"
       % h.get("content-length"))
    st, _, b, _ = request(port, "GET", "/metrics")
    text = b.decode()
    ok(st == 200 and 'route="/status/{code}"' in text and 'route="/status/404"' not in text
       and 'route="/status/4%2F4"' not in text,
       "the metrics route label is the template, never the raw path")
    ok(re.search(r'http_requests_total\{method="GET",route="/status/\{code\}",code="409"\} 1\b', text),
       "  and counts the 409 under it")


def test_view(port):
    st, h, b, _ = request(port, "GET", "/delay/0", headers=["User-Agent: routes-test/1",
                                                                  "X-Request-Id: view-check-1"])
    v = json.loads(b) if st == 200 else {}
    ok(st == 200 and v.get("request_id") == "view-check-1" and h.get("x-request-id") == "view-check-1",
       "the handler sees the request id (the client's, here)")
    ok(v.get("peer") == "127.0.0.1", "and the client's address: %r" % v.get("peer"))
    ok(v.get("user_agent") == "routes-test/1", "and its headers, on a handler-pool thread")
    st, h, b, _ = request(port, "GET", "/delay/0")
    v = json.loads(b) if st == 200 else {}
    ok(re.fullmatch(r"[0-9a-f]{32}", v.get("request_id", "")) and v.get("request_id") == h.get("x-request-id"),
       "a new request id when the client sent none, the same as the header's")


def test_bodies_and_headers(port):
    st, h, b, _ = request(port, "POST", "/count", headers=["Content-Type: text/plain"],
                          body="caf\u00e9\nn\n".encode())
    ok(st == 200 and json.loads(b) == {"bytes": 8, "characters": 7, "lines": 2},
       "POST a raw (text) body: the handler sees it as sent (%s %r)" % (st, b[:80]))
    ok(h.get("cache-control") == "no-store", "  microd's Cache-Control default stays")
    st, h, b, _ = request(port, "POST", "/count", body=b"")
    ok(st == 200 and json.loads(b) == {"bytes": 0, "characters": 0, "lines": 0},
       "a 0-byte body, without a Content-Type: 200 (%s %r)" % (st, b[:80]))
    chunked = (b"POST /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"6\r\nsecond\r\n2\r\n n\r\n0\r\n\r\n")
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(chunked)
    got = recv_all(s)
    s.close()
    ok(got.startswith(b"HTTP/1.1 200 ") and got.endswith(b'{"bytes":8,"characters":8,"lines":0}\n'),
       "a chunked raw body, whole: %r" % got[-60:])
    st, _, b, _ = request(port, "POST", "/count", body=b"x" * 4096)
    ok(st == 200, "the route's own limit: 4096 bytes are taken")
    st, _, b, _ = request(port, "POST", "/count", body=b"x" * 4097)
    ok(st == 413 and detail(b) == "the request body is larger than the limit",
       "4097 bytes get 413 from the route's limit")
    st, _, b, _ = request(port, "POST", "/echo", headers=["Content-Type: application/json"],
                          body=b'"' + b"y" * 8000 + b'"')
    ok(st == 200, "while /echo, under --max-body, takes 8000")
    st, _, b, _ = request(port, "POST", "/count", body=b"\xff\xfe")
    ok(st == 415 and detail(b) == "the body must be UTF-8 text without NUL bytes", "a handler's own 415")
    st, _, b, _ = request(port, "POST", "/notes", headers=["Content-Type: application/json"],
                          body=b'{"title": "t"}')
    ok(st == 503 and detail(b) == "no database is configured",
       "/notes without --database: 503 (%s %s)" % (st, detail(b)))
    st, _, b, _ = request(port, "GET", "/notes/0")
    ok(st == 400 and detail(b) == "a note's id is an integer from 1 to 9223372036854775807",
       "  but a bad id is still the client's 400 (%s %s)" % (st, detail(b)))
    st, h, b, _ = request(port, "GET", "/status/503")
    ok(st == 503 and h.get("retry-after") == "1", "a handler's Retry-After")
    st, h, b, _ = request(port, "GET", "/status/429")
    ok(st == 429 and h.get("retry-after") == "1", "  and on a 429")
    st, h, b, _ = request(port, "GET", "/resolve/localhost")
    v = json.loads(b) if st == 200 else {}
    ok(st == 200 and v.get("host") == "localhost" and "127.0.0.1" in v.get("addresses", []),
       "the README's example route: /resolve/localhost gives 127.0.0.1: %r" % v.get("addresses"))
    ok(h.get("cache-control") == "max-age=30", "  its Cache-Control replaces microd's no-store")
    st, h, b, _ = request(port, "GET", "/status/308")
    ok(st == 308 and h.get("location") == "/status/200", "a handler's Location on a redirect")


def test_life_cycle(proc, port, log):
    text = read_log(log)
    opened = log_index(text, "example routes on:")
    listening = log_index(text, "listening on")
    ok(opened is not None and listening is not None and opened < listening,
       "the start hook ran before the server listened (and so before READY=1)")
    status = stop_microd_keep(proc)
    text = read_log(log)
    sig = log_index(text, "SIGTERM")
    drain = log_index(text, "example routes: the drain begins")
    drained = log_index(text, "drained: no request in flight")
    closed = log_index(text, "example routes: stopped")
    ok(status == 0, "exit status 0")
    ok(sig is not None and drain is not None and drained is not None and sig < drain < drained,
       "the drain hook ran when the drain began, before it ended")
    ok(closed is not None and drained is not None and drained < closed, "the exit hook ran after the drain")
    os.unlink(log)


def stop_microd_keep(proc, timeout=15):
    proc.send_signal(15)
    return wait_exit(proc, timeout)


def fire(port, path, out, i, timeout=20):
    out[i] = request(port, "GET", path, timeout=timeout)


def start_all(port, paths, timeout=20):
    out = [None] * len(paths)
    ts = [threading.Thread(target=fire, args=(port, p, out, i, timeout)) for i, p in enumerate(paths)]
    for t in ts:
        t.start()
    return ts, out


def metric(port, name, took=None):
    st, _, b, t = request(port, "GET", "/metrics")
    if took is not None:
        took.append(t)
    m = re.search(r"^%s (\d+)$" % re.escape(name), b.decode(), re.M) if st == 200 else None
    return int(m.group(1)) if m else None


def test_pool():
    # One I/O thread: had /delay run on it, every probe would wait too. The
    # watchdog checks that thread every 200 ms meanwhile.
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    npath = "/tmp/microd-routes-notify-%d" % os.getpid()
    if os.path.exists(npath):
        os.unlink(npath)
    notify.bind(npath)
    notify.settimeout(0.1)
    pings = [0]
    reading = [True]

    def read_notify():  # as the service manager does, always
        while reading[0]:
            try:
                pings[0] += notify.recv(4096).count(b"WATCHDOG=1")
            except socket.timeout:
                pass
    reader = threading.Thread(target=read_notify)
    reader.start()
    env = dict(os.environ, NOTIFY_SOCKET=npath, WATCHDOG_USEC="400000")
    env.pop("WATCHDOG_PID", None)
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--threads", "1",
                                    "--example-routes", "--handler-threads", "2", "--handler-queue", "2"], env=env)
    if not ok(port is not None, "microd with 1 I/O thread, 2 handler threads, a queue of 2"):
        return
    ts, out = start_all(port, ["/delay/2500"] * 4)
    # Each scrape while it fills is itself a probe that must not wait.
    scrapes = []
    full = poll(lambda: metric(port, "microd_handler_busy", scrapes) == 2
                and metric(port, "microd_handler_queue_depth", scrapes) == 2, 10, 0.02)
    ok(full, "four slow requests: 2 busy handler threads, 2 queued")
    st, h, b, took = request(port, "GET", "/delay/10")
    ok(st == 503 and h.get("retry-after") == "1"
       and detail(b) == "every handler thread is busy and the handler queue is full; retry",
       "the fifth: 503 with Retry-After, naming the full queue")
    ok(took < 1.0, "  at once (%.3f s), not after a wait" % took)
    worst = max(scrapes)
    probes = 0
    for _ in range(20):
        for path in ("/health", "/ready", "/metrics"):
            st, _, _, t = request(port, "GET", path, timeout=5)
            probes += st == 200
            worst = max(worst, t)
    ok(probes == 60, "60 probes (/health, /ready, /metrics) all 200 while the pool is saturated")
    # Generous: a probe stuck behind a handler waits about 2.5 s here.
    ok(worst < 1.0, "  the slowest took %.1f ms (bound 1000 ms; the figure is in make bench)" % (worst * 1000))
    ok((metric(port, "microd_handler_rejected_total") or 0) >= 1, "microd_handler_rejected_total counts the 503")
    # Five rounds of the watchdog's checks (a second) while still saturated.
    poll(lambda: (metric(port, 'microd_watchdog_checks_total{result="ok"}') or 0) >= 5, 2.0, 0.05)
    saturated = metric(port, "microd_handler_busy") == 2
    checks_ok = metric(port, 'microd_watchdog_checks_total{result="ok"}')
    checks_failed = metric(port, 'microd_watchdog_checks_total{result="failed"}')
    checks_full = metric(port, 'microd_watchdog_checks_total{result="full"}')
    reading[0] = False
    reader.join()
    ok(saturated and checks_ok is not None and checks_ok >= 5 and checks_failed == 0 and pings[0] >= 5,
       "the watchdog's checks of the I/O thread pass meanwhile: %s ok, %s full, %s failed, %d pings"
       % (checks_ok, checks_full, checks_failed, pings[0]))
    notify.close()
    os.unlink(npath)
    for t in ts:
        t.join(20)
    ok(all(o is not None and o[0] == 200 for o in out), "the four slow ones all answer 200 in the end")
    ok(poll(lambda: metric(port, "microd_handler_busy") == 0 and metric(port, "microd_handler_queue_depth") == 0,
            5, 0.05), "the gauges go back to 0")
    # keep-alive across a suspended and resumed request
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /delay/50 HTTP/1.1\r\nHost: t\r\n\r\nGET /delay/50 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    got = recv_all(s)
    s.close()
    ok(got.count(b"HTTP/1.1 200 ") == 2, "two pipelined blocking requests on one connection both answer")
    st, h, b, _ = request(port, "HEAD", "/delay/10")
    ok(st == 200 and b == b"", "HEAD on a blocking GET route: 200, no body")

    # The drain waits for queued and running handler work.
    ts, out = start_all(port, ["/delay/1500"] * 4)
    ok(poll(lambda: metric(port, "microd_handler_queue_depth") == 2, 10, 0.02), "four more: 2 running, 2 queued")
    t0 = time.monotonic()
    status = stop_microd_keep(proc)
    for t in ts:
        t.join(20)
    ok(status == 0, "SIGTERM with 2 running and 2 queued: exit 0 after %.1f s" % (time.monotonic() - t0))
    ok(all(o is not None and o[0] == 200 for o in out),
       "all four were answered 200 before the exit: %s" % [o[0] if o else None for o in out])
    os.unlink(log)

    # A handler that outlasts --shutdown-timeout: cut, never a hang or an abort.
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--example-routes",
                                    "--handler-threads", "1", "--handler-queue", "1", "--shutdown-timeout", "0.5"])
    ts, out = start_all(port, ["/delay/6000", "/delay/6000"])
    ok(poll(lambda: metric(port, "microd_handler_queue_depth") == 1, 10, 0.02),
       "one handler thread busy for 6 s, one request queued")
    t0 = time.monotonic()
    status = stop_microd_keep(proc)
    took = time.monotonic() - t0
    for t in ts:
        t.join(20)
    text = read_log(log)
    ok(status == 0 and took < 4, "a handler past the shutdown timeout: exit 0 in %.1f s, no abort" % took)
    ok("stopping with 1 blocking handlers still running" in text and "the application is not torn down" in text,
       "  logged: the running handler is cut, its application left alone")
    ok(all(o is not None and o[0] == 503 and detail(o[2]) == "the service stopped before the handler finished"
           for o in out),
       "  the running one and the queued one both got 503: %s" % [o[0] if o else None for o in out])
    os.unlink(log)


def test_bad_status():
    proc, port, log = start_microd([HOOKS, "--port", "0", "--bind", "127.0.0.1"])
    if not ok(port is not None, "the test-hooks build started"):
        return
    for code, body in (("600", "yes"), ("99", "yes"), ("0", "no"), ("150", "yes"), ("1000", None)):
        st, _, b, _ = request(port, "GET", "/test/status/%s?body=%s" % (code, body or "yes"))
        if body is None:
            ok(st == 400, "/test/status/1000 is refused by the hook itself")
            continue
        ok(st == 500 and detail(b) == "the handler gave no valid reply",
           "a handler answering %s%s becomes a 500" % (code, " with no body" if body == "no" else ""))
    st, _, b, _ = request(port, "GET", "/test/block?ms=%31%30")
    ok(st == 200 and json.loads(b).get("blocked_ms") == 10,
       "query arguments are still percent-decoded (?ms=%31%30 is 10)")
    stop = stop_microd_keep(proc)
    text = read_log(log)
    ok(stop == 0 and re.search(r"GET /test/status/\{code\}: the handler answered status 600; sent 500 instead", text)
       and "the handler answered no body, status 0" in text, "each logged with the route")
    os.unlink(log)


def raw_request(port, data, family=socket.AF_INET, host="127.0.0.1"):
    s = socket.create_connection((host, port), timeout=10) if family == socket.AF_INET else socket.socket(family)
    if family != socket.AF_INET:
        s.settimeout(10)
        s.connect((host, port))
    s.sendall(data)
    got = recv_all(s)
    s.close()
    return got


def test_half_close(port):
    """libmicrohttpd 0.9.75 in poll mode reads a client's end of file when it
    resumes a request, and closes: a blocking route's reply is lost to a
    client that half-closed after sending (microd.8's BUGS). In epoll mode,
    the default, it may arrive or not (seen both ways, even for a lone
    client under load): never anything else. Pinned, so a library that
    changes it is noticed."""
    def half(p, path):
        s = socket.create_connection(("127.0.0.1", p), timeout=10)
        s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s)
        s.close()
        return got
    ok(half(port, "/status/200").startswith(b"HTTP/1.1 200 "), "a half-closed client gets a plain route's reply")
    got = half(port, "/delay/100")
    ok(got == b"" or (got.startswith(b"HTTP/1.1 200 ") and b'"delayed_ms":100' in got and got.endswith(b'}\n')),
       "  with the default event loop (epoll), a blocking route's: the whole reply or none (%r)" % got[:40])
    proc, pport, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--example-routes",
                                     "--event-loop", "poll"])
    if not ok(pport is not None, "microd --event-loop poll started"):
        proc.kill()
        return
    ok(half(pport, "/status/200").startswith(b"HTTP/1.1 200 "), "with poll, a plain route's reply too")
    # /delay/0 raced: the pool's reply could be queued before the library
    # read the end of file. 100 ms lets the EOF always come first.
    ok(half(pport, "/delay/100") == b"", "  but not a blocking route's: closed with no reply (libmicrohttpd 0.9.75)")
    stop_microd(proc, log)


def test_app_fails():
    env = dict(os.environ, MICROD_TEST_APP_FAIL="1")
    proc, port, log = start_microd([HOOKS, "--port", "0", "--bind", "127.0.0.1"], env=env)
    status = wait_exit(proc, 10)
    text = read_log(log)
    ok(port is None and status == 1 and "MICROD_TEST_APP_FAIL is set" in text,
       "a start hook that returns NULL: exit 1 before listening (%s)" % status)
    os.unlink(log)


def test_readme():
    """The README's "Adding a route" code is the source's, byte for byte, and
    so is its handler test."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # From its heading to the next one ("### Testing a handler"), so a code
    # block there is never taken for one of the route's two.
    blocks = readme_code("### Adding a route")
    with open(os.path.join(root, "src/app/examples.c")) as f:
        examples = f.read()
    with open(os.path.join(root, "src/app/routes.c")) as f:
        router = f.read()
    ok(len(blocks) == 2 and blocks[0] in examples and blocks[0].startswith("void\nhandle_resolve("),
       "the README's handler is handle_resolve in src/app/examples.c, verbatim")
    ok(len(blocks) == 2 and blocks[1] in router, "its route row is in src/app/routes.c, verbatim")
    # The handler test: a function of tests/handlers.c, which make check
    # runs, called from its main(), at most 15 lines.
    blocks = readme_code("### Testing a handler")
    with open(os.path.join(root, "tests/handlers.c")) as f:
        handlers = f.read()
    name = re.match(r"static void\n(\w+)\(void\)\n", blocks[0]) if len(blocks) == 1 else None
    ok(name and blocks[0] in handlers and blocks[0].count("\n") <= 15
       and re.search(r"\bmain\(void\)\n\{.*\n\t%s\(\);\n" % name.group(1), handlers, re.S),
       "the README's handler test is %s in tests/handlers.c, verbatim, run by its main(), "
       "%d lines" % (name.group(1) if name else "?", blocks[0].count("\n") if blocks else 0))


def test_peer_v6():
    for bind, family, host, want in (("::1", socket.AF_INET6, "::1", "::1"),
                                     ("::", socket.AF_INET, "127.0.0.1", "::ffff:127.0.0.1")):
        port = free_port(socket.AF_INET6, bind)
        proc, seen, log = start_microd([BIN, "--port", str(port), "--bind", bind, "--example-routes"])
        got = raw_request(port, b"GET /delay/0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                          family, host) if seen else b""
        try:
            peer = json.loads(got[got.find(b"\r\n\r\n") + 4:]).get("peer")
        except ValueError:
            peer = None
        ok(peer == want, "request_peer with --bind %s, a client from %s: %r" % (bind, host, peer))
        stop_microd(proc, log)


def main():
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--log-format", "text",
                                    "--example-routes"])
    if not ok(port is not None, "microd --example-routes started"):
        return done()
    test_params(port)
    test_view(port)
    test_bodies_and_headers(port)
    test_half_close(port)
    test_life_cycle(proc, port, log)

    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1"])
    st, _, b, _ = request(port, "GET", "/status/200")
    ok(st == 404 and detail(b) == "no route for GET /status/200", "without --example-routes they are not there")
    text = read_log(log)
    ok("example routes" not in text, "  and nothing of theirs is opened")
    st, _, b, _ = request(port, "GET", "/metrics")
    ok(re.search(r"^microd_handler_threads 0$", b.decode(), re.M),
       "  nor a handler pool started (no route needs one)")
    stop_microd(proc, log)

    test_pool()
    test_bad_status()
    test_peer_v6()
    test_app_fails()
    test_readme()
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
