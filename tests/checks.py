#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# checks.py -- named health checks against real dependencies on loopback:
# /livez and /readyz follow them, liveness never does, the probes stay fast
# while a check hangs, and a wedged worker fails /livez (TAP)
#
# The dependencies are real sockets of this test on 127.0.0.1: a TCP
# listener that comes and goes, and an HTTP server that answers 200, then
# 500, then accepts and never answers. Every wait polls with a deadline.
import json
import os
import re
import socket
import subprocess
import threading
import time

from server import BIN, poll, recv_all, start_microd, stop_microd, wait_exit
from tap import done, ok

HOOKS = os.path.abspath(os.environ.get("MICROD_HOOKS_BIN", "build/hooks/microd"))
INTERVAL, TIMEOUT = 0.2, 0.3
# Generous: a change shows within INTERVAL + TIMEOUT, polled to this bound.
FOLLOWS = 3.0


def get(port, path, timeout=5):
    """(status or None, parsed JSON body or None, seconds)."""
    t0 = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.settimeout(timeout)
        s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path.encode())
        got = recv_all(s)
        s.close()
    except OSError:
        return None, None, time.monotonic() - t0
    took = time.monotonic() - t0
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", got)
    try:
        body = json.loads(got[got.find(b"\r\n\r\n") + 4:])
    except ValueError:
        body = None
    return (int(m.group(1)) if m else None), body, took


class RawServer:
    """A raw server on 127.0.0.1 on a thread of its own: each accepted
    connection goes to answer(); close() stops it and closes what it
    holds."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.running = True
        self.thread = threading.Thread(target=self.serve)
        self.thread.start()

    def serve(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.answer(c)

    def answer(self, c):
        raise NotImplementedError

    def close(self):
        self.running = False
        self.thread.join()
        for c in self.held:
            c.close()
        self.sock.close()


class Http(RawServer):
    """A tiny HTTP server on 127.0.0.1: mode 200, 500, or hang (accept and
    say nothing)."""

    def __init__(self):
        self.mode = 200
        self.body = b""
        self.ends = {"eof": 0, "reset": 0}  # how microd's side closed
        super().__init__()

    def answer(self, c):
        if self.mode == "hang":
            self.held.append(c)
            return
        if self.mode == "open":  # a whole answer, and the connection kept
            c.recv(4096)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            self.held.append(c)
            return
        c.settimeout(2)
        reason = b"\xff\xfe" if self.mode == 502 else b"X"  # 502: bytes that are not UTF-8
        try:
            c.recv(4096)
            c.sendall(b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                      % (self.mode, reason, len(self.body), self.body))
            c.shutdown(socket.SHUT_WR)
            self.ends["eof" if c.recv(1) == b"" else "reset"] += 1
        except ConnectionResetError:
            self.ends["reset"] += 1
        except OSError:
            pass
        c.close()


def listener(port=0):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    return s


def status_of(port, path):
    return get(port, path)[0]


def test_dependencies():
    tcp = listener()
    tcp_port = tcp.getsockname()[1]
    http = Http()
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--log-format", "text",
                                    "--check", "db=tcp://127.0.0.1:%d" % tcp_port,
                                    "--check", "api=http://127.0.0.1:%d/healthz" % http.port,
                                    "--check-interval", str(INTERVAL), "--check-timeout", str(TIMEOUT)])
    if not ok(port is not None, "microd with a tcp:// and an http:// check"):
        return
    live = []
    stop = [False]

    def watch_live():  # liveness, all along
        while not stop[0]:
            live.append(status_of(port, "/livez"))
            time.sleep(0.05)
    watcher = threading.Thread(target=watch_live)
    watcher.start()

    ok(poll(lambda: status_of(port, "/readyz") == 200, FOLLOWS, 0.05), "/readyz: 200 once both checks pass")
    st, body, _ = get(port, "/readyz")
    ok(body == {"status": "pass"}, "  the body: %s" % body)
    st, body, _ = get(port, "/readyz?verbose")
    checks = (body or {}).get("checks", {})
    ok(st == 200 and set(checks) == {"drain", "db", "api"}
       and all(c.get("status") == "pass" and isinstance(c.get("duration_us"), int)
               and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", c.get("time") or "")
               for c in checks.values()),
       "?verbose: each check's status, time and duration: %s" % sorted(checks))
    st, body, _ = get(port, "/readyz?verbose=false")
    ok(st == 200 and set((body or {}).get("checks", {})) == {"drain", "db", "api"},
       "?verbose=false is verbose too, as kube-apiserver reads it")

    tcp.close()  # the database goes away
    t0 = time.monotonic()
    ok(poll(lambda: status_of(port, "/readyz") == 503, FOLLOWS, 0.05),
       "the TCP listener closed: /readyz 503 after %.2f s (interval %.1f + timeout %.1f)"
       % (time.monotonic() - t0, INTERVAL, TIMEOUT))
    ok(status_of(port, "/readyz/db") == 503 and status_of(port, "/readyz/api") == 200,
       "  /readyz/db is 503, /readyz/api still 200")
    st, body, _ = get(port, "/readyz?verbose")
    ok(st == 503 and isinstance(body, dict) and "db" in body.get("checks", {}) and "output" not in json.dumps(body),
       "  the reason stays out of the body without --health-details")
    ok(status_of(port, "/ready") == 503, "  /ready, the old face of readiness, too")
    ok(get(port, "/readyz?exclude=db")[0] == 200, "?exclude=db leaves it out: 200")
    ok(get(port, "/readyz?" + "&".join(["exclude=db"] * 30))[0] == 200, "  also named 30 times: each name counts once")
    st, body, _ = get(port, "/readyz?" + "&".join("exclude=x%d" % i for i in range(20)) + "&exclude=db")
    ok(st == 400 and (body or {}).get("detail") == "?exclude= names more than 20 checks",
       "  21 different names: 400, rather than a name left out unread: %s %s" % (st, body))
    st, body, _ = get(port, "/readyz?verbose&exclude=db&exclude=nosuch")
    ok(st == 200 and body.get("notes") == ["exclude=nosuch: no such check, ignored"]
       and body["checks"]["db"].get("excluded") is True,
       "  an unknown name is ignored and said so: %s" % (body or {}).get("notes"))
    st, body, _ = get(port, "/readyz?verbose&exclude=db&exclude=%FF%FE&exclude=" + "x" * 31 + "%C3%A9")
    ok(st == 200 and (body or {}).get("notes") == ["exclude=\ufffd\ufffd: no such check, ignored",
                                                   "exclude=" + "x" * 31 + "\ufffd: no such check, ignored"],
       "  also a name that is not UTF-8, or is cut inside a character: %s" % (body or {}).get("notes"))

    tcp = listener(tcp_port)  # it comes back
    t0 = time.monotonic()
    ok(poll(lambda: status_of(port, "/readyz") == 200, FOLLOWS, 0.05),
       "it listens again: /readyz 200 after %.2f s" % (time.monotonic() - t0))

    http.mode = 500
    ok(poll(lambda: status_of(port, "/readyz/api") == 503, FOLLOWS, 0.05), "the HTTP dependency answers 500: 503")
    http.mode = 200
    ok(poll(lambda: status_of(port, "/readyz/api") == 200, FOLLOWS, 0.05), "  200 again: 200")
    http.mode = "hang"
    ok(poll(lambda: status_of(port, "/readyz/api") == 503, FOLLOWS, 0.05),
       "it accepts and never answers: 503 once the timeout passes")
    worst, answered = 0.0, 0
    for _ in range(100):  # while the check hangs on every run
        st, _, took = get(port, "/readyz")
        answered += st == 503
        worst = max(worst, took)
    ok(answered == 100 and worst < 0.25,
       "100 /readyz while a check hangs: all 503, the slowest took %.1f ms (bound 250)" % (worst * 1000))
    stop[0] = True
    watcher.join()
    ok(len(live) > 20 and all(s == 200 for s in live),
       "/livez answered 200 all along (%d probes): liveness depends on nothing outside" % len(live))

    st, _, b = None, None, None
    text = get(port, "/metrics")
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    metrics = recv_all(s).decode()
    s.close()
    ok(re.search(r'^microd_check_up\{check="api",group="readiness"\} 0$', metrics, re.M)
       and re.search(r'^microd_check_up\{check="db",group="readiness"\} 1$', metrics, re.M)
       and re.search(r'^microd_check_up\{check="pool",group="liveness"\} 1$', metrics, re.M),
       "microd_check_up per check and group")
    fails = re.search(r'^microd_check_failures_total\{check="db"\} (\d+)$', metrics, re.M)
    ok(fails and int(fails.group(1)) >= 1 and re.search(r'^microd_check_duration_seconds\{check="api"\} 0\.\d+$',
                                                       metrics, re.M),
       "microd_check_failures_total and microd_check_duration_seconds")
    del text
    status = stop_microd_keep(proc)
    with open(log) as f:
        text = f.read()
    ok(status == 0, "exit 0 with a check hanging")
    ok(len(re.findall(r"check db: pass -> fail: connect to 127\.0\.0\.1:\d+: Connection refused", text)) == 1
       and text.count("check db: fail -> pass") == 1,
       "db's transitions are logged once each, with the reason")
    ok(re.search(r"check api: pass -> fail: GET /healthz: no answer in 300 ms", text),
       "the hanging one is logged with its timeout")
    os.unlink(log)
    http.close()
    tcp.close()


def stop_microd_keep(proc):
    proc.send_signal(15)
    return wait_exit(proc, 15)


def test_details():
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--health-details",
                                    "--check", "gone=tcp://127.0.0.1:1", "--check-interval", "0.2"])
    # Not just 503 (that it is before its first run): a run has ended.
    ok(poll(lambda: (lambda r: r[0] == 503 and (r[1] or {}).get("time"))(get(port, "/readyz/gone?verbose")),
            FOLLOWS, 0.05), "a check of a closed port fails")
    st, body, _ = get(port, "/readyz/gone?verbose")
    ok(st == 503 and body.get("output") == "connect to 127.0.0.1:1: Connection refused",
       "with --health-details the reason is in the body: %r" % (body or {}).get("output"))
    stop_microd(proc, log)
    http = Http()
    http.mode = 502
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--health-details",
                                    "--check", "odd=http://127.0.0.1:%d/" % http.port, "--check-interval", "0.2"])
    ok(poll(lambda: (lambda r: r[0] == 503 and (r[1] or {}).get("time"))(get(port, "/readyz/odd?verbose")),
            FOLLOWS, 0.05), "a 502 whose reason phrase is not UTF-8 fails the check")
    st, body, _ = get(port, "/readyz/odd?verbose")
    ok(body is not None and re.fullmatch("GET /: HTTP/1.1 502 \ufffd\ufffd \\(trace [0-9a-f]{32}\\)",
                                         body.get("output", "")),
       "  and its output is valid JSON, the bytes replaced: %r" % (body or {}).get("output"))
    http.close()
    st, body, _ = get(port, "/readyz/nosuch")
    ok(st == 404 and body.get("detail") == "no check named nosuch in readiness", "/readyz/nosuch: 404")
    st, body, _ = get(port, "/livez/pool")
    ok(st == 200 and body == {"status": "pass"}, "/livez/pool: 200")
    stop_microd(proc, log)


def test_reads_the_answer():
    http = Http()
    http.body = b"x" * 3000
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--check-interval", "0.1",
                                    "--check", "api=http://127.0.0.1:%d/" % http.port])
    ok(poll(lambda: http.ends["eof"] + http.ends["reset"] >= 5, FOLLOWS, 0.05) and status_of(port, "/readyz") == 200,
       "an http:// check of an answer with a 3000-byte body passes")
    ok(http.ends["reset"] == 0, "  and reads it to the end before it closes: no reset (%s)" % http.ends)
    stop_microd(proc, log)
    http.close()
    http = Http()
    http.mode = "open"
    t0 = time.monotonic()
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--check-interval", "0.2",
                                    "--check-timeout", "3", "--check", "ko=http://127.0.0.1:%d/" % http.port])
    ok(poll(lambda: status_of(port, "/readyz") == 200, FOLLOWS, 0.05), "a peer that answers and keeps the "
       "connection open passes at once (%.2f s; --check-timeout 3)" % (time.monotonic() - t0))
    runs = poll(lambda: len(http.held) >= 4 and len(http.held), FOLLOWS, 0.05)
    st, body, _ = get(port, "/readyz/ko?verbose")
    ok(runs and (body or {}).get("duration_us", 10 ** 7) < 1000000,
       "  its runs are not held to the timeout: %s runs in %.2f s, the last took %s us"
       % (runs, time.monotonic() - t0, (body or {}).get("duration_us")))
    stop_microd(proc, log)
    http.close()


def test_first_run_and_threshold():
    http = Http()
    http.mode = "hang"
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--check-timeout", "3",
                                    "--check", "slow=http://127.0.0.1:%d/" % http.port])
    st, body, _ = get(port, "/readyz/slow?verbose")
    ok(st == 503 and body.get("time") is None,
       "before its first run ends a check fails readiness (time null): %s %s" % (st, body))
    ok(status_of(port, "/livez") == 200, "  while liveness passes")
    stop_microd(proc, log)
    http.close()
    tcp = listener()
    tcp_port = tcp.getsockname()[1]
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--check-threshold", "3",
                                    "--check-interval", "0.2", "--check", "db=tcp://127.0.0.1:%d" % tcp_port])
    ok(poll(lambda: status_of(port, "/readyz") == 200, FOLLOWS, 0.05), "--check-threshold 3: passes")
    tcp.close()
    ok(poll(lambda: status_of(port, "/readyz") == 503, FOLLOWS * 2, 0.02), "  fails once the port is closed")
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    m = re.search(rb'microd_check_failures_total\{check="db"\} (\d+)', recv_all(s))
    s.close()
    ok(m and int(m.group(1)) >= 3, "  but only after 3 failed runs in a row (%s)" % (m.group(1) if m else None))
    stop_microd(proc, log)


def test_watchdog_feeds_pool():
    npath = "/tmp/microd-checks-notify-%d" % os.getpid()
    if os.path.exists(npath):
        os.unlink(npath)
    n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    n.bind(npath)
    n.settimeout(0.1)
    reading = [True]

    def drain():
        while reading[0]:
            try:
                n.recv(4096)
            except socket.timeout:
                pass
    t = threading.Thread(target=drain)
    t.start()
    env = dict(os.environ, NOTIFY_SOCKET=npath, WATCHDOG_USEC="400000")
    env.pop("WATCHDOG_PID", None)
    # The pool check's own thread would run once an hour: its runs come
    # from the watchdog, every 200 ms.
    proc, port, log = start_microd([HOOKS, "--port", "0", "--bind", "127.0.0.1", "--check-interval", "3600",
                                    "--check-timeout", "5", "--threads", "2"], env=env)
    first = poll(lambda: (get(port, "/livez/pool?verbose")[1] or {}).get("time"), 3, 0.05)
    later = poll(lambda: (lambda t: t if t not in (None, first) else None)(
        (get(port, "/livez/pool?verbose")[1] or {}).get("time")), 3, 0.05)
    ok(first and later and later > first, "with WATCHDOG_USEC the watchdog's rounds are the pool check's runs "
       "(%s, then %s, with --check-interval 3600)" % (first, later))
    blockers = []
    for _ in range(2):  # 1 s on each worker: longer than the round
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /test/block?ms=1000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        blockers.append(s)
    ok(poll(lambda: status_of(port, "/livez") == 503, FOLLOWS, 0.05),
       "  and its timeout is the round (200 ms), not --check-timeout 5: a worker busy for 1 s fails /livez")
    for s in blockers:
        s.close()
    stop_microd(proc, log)
    reading[0] = False
    t.join()
    n.close()
    os.unlink(npath)


def test_drain():
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--drain-delay", "3"])
    ok(status_of(port, "/readyz") == 200, "/readyz 200 while serving")
    proc.send_signal(15)
    ok(poll(lambda: status_of(port, "/readyz") == 503, FOLLOWS, 0.05), "from SIGTERM on /readyz is 503 (drain)")
    st, body, _ = get(port, "/readyz/drain")
    ok(st == 503 and body == {"status": "fail"}, "  /readyz/drain says why")
    ok(status_of(port, "/livez") == 200, "  while /livez stays 200: a drain never restarts a pod")
    ok(wait_exit(proc, 15) == 0, "  and the drain ends with exit 0")
    os.unlink(log)


def test_stop_cuts_a_run():
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(8)  # connects, never answers
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--check-timeout", "20",
                                    "--check", "slow=http://127.0.0.1:%d/" % hang.getsockname()[1]])
    t0 = time.monotonic()
    status = stop_microd_keep(proc)
    took = time.monotonic() - t0
    with open(log) as f:
        text = f.read()
    ok(status == 0 and took < 3, "a stop does not wait for a check's 20 s timeout: exit 0 in %.1f s" % took)
    ok("check slow" not in text, "  and a run cut short is no result (nothing logged for it)")
    os.unlink(log)
    hang.close()


def test_ipv6_host():
    seen = []
    srv = socket.socket(socket.AF_INET6)
    srv.bind(("::1", 0))
    srv.listen(8)
    srv.settimeout(5)
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--check-interval", "60",
                                    "--check", "six=http://[::1]:%d/p" % srv.getsockname()[1]])
    try:
        c, _ = srv.accept()
        c.settimeout(5)
        seen.append(c.recv(4096))
        c.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
        c.close()
    except OSError:
        pass
    ok(seen and (b"\r\nHost: [::1]:%d\r\n" % srv.getsockname()[1]) in seen[0],
       "an IPv6 target gets Host: [::1]:PORT: %r" % (seen[0].split(b"\r\n")[1] if seen else None))
    stop_microd(proc, log)
    srv.close()


def test_trace_outbound():
    """Each run of an http:// check is a trace of its own: it sends a valid
    traceparent, and the failure's log line names its trace-id."""
    seen = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(5)
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--check-interval", "0.2",
                                    "--check", "traced=http://127.0.0.1:%d/p" % srv.getsockname()[1]])
    try:
        for _ in range(2):
            c, _ = srv.accept()
            c.settimeout(5)
            seen.append(c.recv(4096))
            c.sendall(b"HTTP/1.1 500 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            c.close()
    except OSError:
        pass
    ids = [re.search(rb"\r\ntraceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-00\r\n", r) for r in seen]
    ok(len(ids) == 2 and all(ids) and ids[0].group(1) != ids[1].group(1) and
       all(m.group(1) != b"0" * 32 and m.group(2) != b"0" * 16 for m in ids),
       "an http:// check sends a Level 1 traceparent, a new trace each run: %s"
       % [m.group(0).strip() if m else None for m in ids])
    first = ids[0].group(1).decode() if ids and ids[0] else "none"
    ok(poll(lambda: ("(trace %s)" % first) in open(log).read(), FOLLOWS, 0.05),
       "  and the failure's log line names the run's trace-id")
    stop_microd(proc, log)
    srv.close()


class Pieces(RawServer):
    """A raw HTTP server on 127.0.0.1 that answers every connection with
    its pieces, each sent on its own (TCP_NODELAY, 50 ms apart: the pause
    only paces the bytes into separate reads; the verdict asserted must
    not depend on it), then closes."""

    def __init__(self, pieces):
        self.pieces = pieces
        super().__init__()

    def answer(self, c):
        try:
            c.settimeout(2)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            got = b""
            while b"\r\n\r\n" not in got:
                more = c.recv(4096)
                if not more:
                    break
                got += more
            for i, piece in enumerate(self.pieces):
                if i:
                    time.sleep(0.05)
                c.sendall(piece)
            c.shutdown(socket.SHUT_WR)
            c.recv(1)
        except OSError:
            pass
        c.close()


def test_status_line():
    """The status line is read as RFC 9112 says whatever the reads: a
    byte that breaks it fails the check, and the reason quotes the line."""
    cases = (("split12", [b"HTTP/1.1 200", b"999\r\nContent-Length: 0\r\n\r\n"], "HTTP/1.1 200999"),
             ("version", [b"HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n"], "HTTP/1.2 200 OK"),
             ("twodigits", [b"HTTP/1.1 20", b" OK\r\nContent-Length: 0\r\n\r\n"], "HTTP/1.1 20 OK"),
             ("bytewise", [bytes([b]) for b in b"HTTP/1.1 2009 X\r\n"] + [b"\r\n"], "HTTP/1.1 2009 X"),
             ("good", [b"HTTP/1.1 200", b" OK\r\nContent-Length: 0\r\n\r\n"], None))
    servers = [Pieces(pieces) for _, pieces, _ in cases]
    args = [BIN, "--port", "0", "--bind", "127.0.0.1", "--health-details", "--check-interval", "60",
            "--check-timeout", "3"]
    for (name, _, _), srv in zip(cases, servers):
        args += ["--check", "%s=http://127.0.0.1:%d/" % (name, srv.port)]
    proc, port, log = start_microd(args)
    if ok(port is not None, "microd with checks of status lines sent in pieces"):
        ran = poll(lambda: all((get(port, "/readyz/%s?verbose" % name)[1] or {}).get("time")
                               for name, _, _ in cases), FOLLOWS * 2, 0.05)
        ok(ran, "  each check has run")
        for name, pieces, line in cases:
            st, body, _ = get(port, "/readyz/%s?verbose" % name)
            out = (body or {}).get("output", "")
            if line is None:
                ok(st == 200, "%r then %r: passes (%s %r)" % (pieces[0], pieces[1], st, out))
                continue
            ok(st == 503 and re.fullmatch(r"GET /: malformed status line: %s \(trace [0-9a-f]{32}\)"
                                          % re.escape(line), out),
               "%s in %d pieces (%r first): fails, naming the line: %r" % (line, len(pieces), pieces[0], out))
    stop_microd(proc, log)
    for srv in servers:
        srv.close()


def test_wedged():
    # One handler blocks one worker of four: the other three answer the
    # probes at once, so /livez shows what the pool check saw, not a probe
    # queued behind the blocked worker.
    proc, port, log = start_microd([HOOKS, "--port", "0", "--bind", "127.0.0.1", "--threads", "4",
                                    "--check-interval", "0.2", "--check-timeout", "0.3"])
    if not ok(port is not None, "the test build with 4 worker threads"):
        return
    ok(poll(lambda: status_of(port, "/livez") == 200, FOLLOWS, 0.05), "/livez 200")
    blocker = socket.create_connection(("127.0.0.1", port), timeout=10)
    blocker.sendall(b"GET /test/block?ms=4000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    got = poll(lambda: status_of(port, "/livez") == 503, FOLLOWS, 0.05)
    ok(got, "a worker thread wedged (a handler blocking it): /livez 503")
    blocker.close()
    ok(poll(lambda: status_of(port, "/livez") == 200, 10, 0.1), "  and 200 again once it is free")
    stop_microd(proc, log)


def test_pool_timeout_floor():
    proc, port, log = start_microd([HOOKS, "--port", "0", "--bind", "127.0.0.1", "--threads", "2",
                                    "--check-interval", "0.1", "--check-timeout", "0.05"])
    if not ok(port is not None, "the test build with --check-timeout 0.05"):
        return
    ok(poll(lambda: (get(port, "/livez/pool?verbose")[1] or {}).get("time"), FOLLOWS, 0.05), "the pool check ran")
    seen = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        blockers = []
        for _ in range(2):  # each worker busy for 300 ms: busy, not wedged
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /test/block?ms=300 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            blockers.append(s)
        for _ in range(6):
            seen.append(status_of(port, "/livez"))
            time.sleep(0.05)
        for s in blockers:
            recv_all(s)
            s.close()
    ok(seen and set(seen) == {200}, "a pool busy for 300 ms stays live: the pool check waits 1 s at least, "
       "whatever --check-timeout says (%d probes: %s)" % (len(seen), sorted(set(seen), key=str)))
    stop_microd(proc, log)


def test_watchdog_fails():
    env = dict(os.environ, NOTIFY_SOCKET="/nonexistent/notify", WATCHDOG_USEC="400000",
               MICROD_TEST_WATCHDOG_FAIL="1")
    env.pop("WATCHDOG_PID", None)
    proc, port, log = start_microd([HOOKS, "--port", "0", "--bind", "127.0.0.1"], env=env)
    status = wait_exit(proc, 10)
    with open(log) as f:
        text = f.read()
    ok(status == 1 and "watchdog: cannot start its thread" in text and "-> ready" not in text,
       "a watchdog that cannot start (its rounds are the pool check's): exit 1, never ready (%s)" % status)
    os.unlink(log)


def test_bad_input():
    for spec, why in (("db=udp://127.0.0.1:53", "the scheme must be tcp:// or http://"),
                      ("db=tcp://127.0.0.1", "no :PORT"),
                      ("DB=tcp://127.0.0.1:1", "the name must be 1 to 32 of a-z, 0-9, '_', '-'"),
                      ("pool=tcp://127.0.0.1:1", "pool and drain are the built-in checks' names")):
        r = subprocess.run([BIN, "--port", "0", "--check", spec], capture_output=True, timeout=10)
        lines = r.stderr.decode().strip().splitlines()
        ok(r.returncode == 2 and lines == ["microd: --check: invalid value '%s': %s" % (spec, why)],
           "--check %s: exit 2, one line: %s" % (spec, lines))
    r = subprocess.run([BIN, "--port", "0", "--check", "a=tcp://127.0.0.1:1", "--check", "a=tcp://127.0.0.1:2"],
                       capture_output=True, timeout=10)
    ok(r.returncode == 2 and r.stderr == b"microd: --check: invalid value 'a=tcp://127.0.0.1:2': "
       b"a check of that name is given already\n", "a name twice: exit 2, naming the second: %r" % r.stderr)
    many = []
    for i in range(17):
        many += ["--check", "c%d=tcp://127.0.0.1:%d" % (i, i + 1)]
    r = subprocess.run([BIN, "--port", "0"] + many, capture_output=True, timeout=10)
    ok(r.returncode == 2 and r.stderr == b"microd: --check: invalid value 'c16=tcp://127.0.0.1:17': "
       b"16 checks at most\n", "a 17th --check: exit 2: %r" % r.stderr)
    env = dict(os.environ, MICROD_CHECKS="a=tcp://127.0.0.1:1 a=tcp://127.0.0.1:2")
    r = subprocess.run([BIN, "--port", "0"], capture_output=True, timeout=10, env=env)
    ok(r.returncode == 2 and r.stderr == b"microd: MICROD_CHECKS: invalid value 'a=tcp://127.0.0.1:2': "
       b"a check of that name is given already\n",
       "MICROD_CHECKS with a name twice: exit 2, naming the check and the reason: %r" % r.stderr)
    env = dict(os.environ, MICROD_CHECKS="a=tcp://127.0.0.1:1 b=http://[::1]:2/x\n")
    r = subprocess.run([BIN, "--check-config"], capture_output=True, timeout=10, env=env)
    ok(r.returncode == 0 and "check a: tcp://127.0.0.1:1\n" in r.stdout.decode()
       and "check b: http://[::1]:2/x\n" in r.stdout.decode(),
       "MICROD_CHECKS takes several, separated by blanks or a newline; --check-config lists them")
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1"], env=env)
    st, body, _ = get(port, "/readyz?verbose")
    ok(set((body or {}).get("checks", {})) == {"drain", "a", "b"}, "  and microd runs them: %s"
       % sorted((body or {}).get("checks", {})))
    stop_microd(proc, log)


def request_lines(log, route):
    """The access-log lines (JSON) of route."""
    out = []
    with open(log) as f:
        for line in f:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if j.get("msg") == "request" and j.get("route") == route:
                out.append(j)
    return out


def test_failed_probe_log():
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--log-format", "json",
                                    "--check", "gone=tcp://127.0.0.1:1", "--check-interval", "0.2"])
    if not ok(port is not None, "microd with a check that fails"):
        return
    t0 = time.monotonic()
    sent = [0]

    def ask():
        sent[0] += 1
        return get(port, "/readyz")[0]
    ok(poll(lambda: ask() == 503, FOLLOWS, 0.05), "/readyz fails")
    for _ in range(40):
        ask()
    # Every failed answer is either logged or counted as skipped in the
    # next line that is: one line a second at most, the first at once.
    ok(poll(lambda: ask() and any(j.get("skipped") for j in request_lines(log, "/readyz")), 5, 0.1),
       "a later line says how many failed probes were left out")
    elapsed = time.monotonic() - t0
    lines = request_lines(log, "/readyz")
    skipped = sum(j.get("skipped", 0) for j in lines)
    ok(1 <= len(lines) <= elapsed + 1 and skipped >= 40 and len(lines) + skipped <= sent[0]
       and all(j["status"] == 503 and j["level"] == "warn" for j in lines),
       "%d failed /readyz: %d lines in %.1f s, %d skipped" % (sent[0], len(lines), elapsed, skipped))
    for _ in range(3):  # not logged: within a second of the last line
        ask()
    ok(stop_microd_keep(proc) == 0, "  microd stops")
    lines = request_lines(log, "/readyz")
    with open(log) as f:
        m = re.search(r'"msg":"(\d+) failed probe answers since the last one logged were not access-logged"',
                      f.read())
    rest = int(m.group(1)) if m else 0
    ok(len(lines) + sum(j.get("skipped", 0) for j in lines) + rest == sent[0],
       "  every failed answer is a line, or counted in a later one or in the last words at the stop "
       "(%d lines, %d skipped, %d at the stop, of %d)"
       % (len(lines), sum(j.get("skipped", 0) for j in lines), rest, sent[0]))
    os.unlink(log)
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--log-format", "json",
                                    "--log-probes", "--check", "gone=tcp://127.0.0.1:1"])
    for _ in range(10):
        get(port, "/readyz")
    ok(poll(lambda: len(request_lines(log, "/readyz")) == 10, 5, 0.05),
       "with --log-probes every failed probe is logged: %d of 10" % len(request_lines(log, "/readyz")))
    stop_microd(proc, log)


def main():
    test_dependencies()
    test_details()
    test_reads_the_answer()
    test_first_run_and_threshold()
    test_watchdog_feeds_pool()
    test_drain()
    test_stop_cuts_a_run()
    test_ipv6_host()
    test_status_line()
    test_wedged()
    test_trace_outbound()
    test_pool_timeout_floor()
    test_watchdog_fails()
    test_bad_input()
    test_failed_probe_log()
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
