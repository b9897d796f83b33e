#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# gone.py -- a blocking handler is told when its client leaves: its
# request_gone_fd turns readable on a close, a reset or a half-close, never
# on a pipelined request, never for the next request on its thread (TAP)
#
# Drives the test build's GET /test/gone?ms=N, which polls the descriptor
# for up to N ms and logs "test gone: ID watching at NS", then "ID fired at NS"
# (CLOCK_MONOTONIC, the clock of time.monotonic_ns) or "ID not fired".
import json
import os
import random
import re
import socket
import struct
import time

from server import http_once, poll, recv_all, start_microd, stop_microd, wait_exit
from tap import done, ok

HOOKS = os.path.abspath(os.environ.get("MICROD_HOOKS_BIN", "build/hooks/microd"))

# How long after the client leaves the handler must know (issue 26).
WITHIN_NS = 100 * 1000000


def read_log(log):
    with open(log) as f:
        return f.read()


def outcome(log, rid, seconds=10):
    """The handler's verdict for request rid, from the log: ("fired", ns),
    ("not fired", None), or (None, None) when none came in time."""
    pat = re.compile(r"test gone: %s (fired at (\d+)|not fired|not watched)\b" % re.escape(rid))

    def find():
        return pat.search(read_log(log))
    m = poll(find, seconds, 0.005)
    if not m:
        return None, None
    if m.group(2):
        return "fired", int(m.group(2))
    return m.group(1), None


def watching(log, rid, seconds=10):
    pat = "test gone: %s watching" % rid
    return poll(lambda: pat in read_log(log), seconds, 0.002)


def send(port, rid, ms, close=False, path="/test/gone"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET %s?ms=%d HTTP/1.1\r\nHost: t\r\nX-Request-Id: %s\r\n%s\r\n"
              % (path.encode(), ms, rid.encode(), b"Connection: close\r\n" if close else b""))
    return s


def body(got):
    try:
        return json.loads(got[got.find(b"\r\n\r\n") + 4:])
    except ValueError:
        return None


def test_close(port, log):
    s = send(port, "close-1", 5000)
    ok(watching(log, "close-1"), "the handler runs and watches")
    left = time.monotonic_ns()
    s.close()
    what, at = outcome(log, "close-1")
    ok(what == "fired" and at - left < WITHIN_NS,
       "a client that closes mid-handler: request_gone_fd readable within 100 ms (%s, %.1f ms)"
       % (what, (at - left) / 1e6 if at else -1))


def test_reset(port, log):
    s = send(port, "reset-1", 5000)
    ok(watching(log, "reset-1"), "the handler runs and watches")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    left = time.monotonic_ns()
    s.close()  # a reset, not a FIN
    what, at = outcome(log, "reset-1")
    ok(what == "fired" and at - left < WITHIN_NS,
       "a client that resets (SO_LINGER 0): readable within 100 ms (%s, %.1f ms)"
       % (what, (at - left) / 1e6 if at else -1))


def test_half_close(port, log):
    """Half-close counts as gone (as Go's net/http cancels a request's
    context at the client's end of file); tests/routes.py pins that such a
    client gets no reply from a blocking route anyway."""
    s = send(port, "half-1", 5000)
    ok(watching(log, "half-1"), "the handler runs and watches")
    left = time.monotonic_ns()
    s.shutdown(socket.SHUT_WR)
    what, at = outcome(log, "half-1")
    ok(what == "fired" and at - left < WITHIN_NS,
       "a client that shuts down its sending side counts as gone: readable within 100 ms (%s, %.1f ms)"
       % (what, (at - left) / 1e6 if at else -1))
    s.close()


def test_runs_on(port, log):
    """A handler that never polls the descriptor (/delay) runs to its end
    as before: its access-log line has the whole delay."""
    s = send(port, "delay-1", 0, path="/delay/300")
    ok(poll(lambda: re.search(rb"^microd_handler_busy 1$", http_once(port, "/metrics")[1], re.M), 5, 0.005),
       "/delay/300's handler runs")
    s.close()
    pat = re.compile(r"path=/delay/300 .*duration_ms=([\d.]+) .*request_id=delay-1")
    m = poll(lambda: pat.search(read_log(log)), 10, 0.01)
    ok(m and float(m.group(1)) >= 300,
       "a handler that never polls it runs to its end (%s ms)" % (m.group(1) if m else None))


def test_stays(port, log):
    s = send(port, "stay-1", 300, close=True)
    got = recv_all(s)
    s.close()
    ok(body(got) == {"watched": True, "gone": False},
       "a client that stays: never readable, and the handler answers (%r)" % got[-40:])
    ok(outcome(log, "stay-1")[0] == "not fired", "  its log says not fired")


def test_pipelined(port, log):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /test/gone?ms=300 HTTP/1.1\r\nHost: t\r\nX-Request-Id: pipe-1\r\n\r\n")
    ok(watching(log, "pipe-1"), "the handler runs and watches")
    # The second request arrives while the first one's handler runs: data
    # to read is no sign of leaving.
    s.sendall(b"GET /test/gone?ms=0 HTTP/1.1\r\nHost: t\r\nX-Request-Id: pipe-2\r\n"
              b"Connection: close\r\n\r\n")
    got = recv_all(s)
    s.close()
    answers = re.findall(rb"\r\n\r\n(\{[^\n]*\})\n", got)
    ok(outcome(log, "pipe-1")[0] == "not fired" and len(answers) == 2
       and json.loads(answers[0]) == {"watched": True, "gone": False},
       "a pipelined request while the first one's handler runs: not readable (%r)" % answers)
    ok(len(answers) == 2 and json.loads(answers[1]) == {"watched": True, "gone": False},
       "  and the second is served, watched, after it")


def test_io_thread(port, log):
    s = send(port, "io-1", 0, close=True, path="/test/gone-io")
    got = recv_all(s)
    s.close()
    ok(body(got) == {"watched": False},
       "a handler on an I/O thread gets request_gone_fd -1 (%r)" % got[-30:])


def test_left_while_queued(log, port):
    """With one handler thread busy, a request that waits in the queue and
    whose client leaves is seen as gone as soon as its handler starts."""
    busy = send(port, "queue-busy", 400, close=True)
    ok(watching(log, "queue-busy"), "one handler thread, busy")
    s = send(port, "queue-left", 5000)
    s.close()
    recv_all(busy)
    busy.close()
    what, at = outcome(log, "queue-left")
    m = re.search(r"test gone: queue-left watching at (\d+)", read_log(log))
    began = int(m.group(1)) if m else 0
    ok(what == "fired" and at - began < WITHIN_NS,
       "a client that left while its request was queued: readable as its handler starts (%s, %.1f ms)"
       % (what, (at - began) / 1e6 if at else -1))


def test_cycles(port, log, n):
    """One handler thread, requests back to back, each client that leaves
    doing so near its handler's end: the next request on that thread must
    never see the signal meant for the one before."""
    wrong = []
    fired = 0
    rng = random.Random(26)
    for i in range(n):
        ms = rng.choice((0, 1, 2, 5))
        leaver = send(port, "cyc-l%d" % i, ms)
        stayer = send(port, "cyc-s%d" % i, 1, close=True)  # queued behind it
        if rng.random() < 0.5:
            leaver.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(rng.random() * ms / 1000.0)
        leaver.close()
        got = recv_all(stayer)
        stayer.close()
        if body(got) != {"watched": True, "gone": False}:
            wrong.append((i, got[-60:]))
        what, _ = outcome(log, "cyc-l%d" % i)
        fired += what == "fired"
    ok(not wrong, "%d cycles on one handler thread: no request saw the previous one's signal %r"
       % (n, wrong[:3]))
    ok(fired > 0, "  while %d of the %d clients that left were seen leaving" % (fired, n))


def test_stale(port, log):
    """The watcher (made to lag 150 ms by MICROD_TEST_GONE_LAG_MS) handles
    a client's leaving only after that request's handler ended and the next
    one on the same thread started: the event is stale, and dropped."""
    leaver = send(port, "stale-l", 60)
    stayer = send(port, "stale-s", 400, close=True)  # queued behind it
    watching(log, "stale-l")
    leaver.close()
    got = recv_all(stayer)
    stayer.close()
    ok(outcome(log, "stale-l")[0] == "not fired" and body(got) == {"watched": True, "gone": False},
       "an event that comes after its request ended never reaches the next request (%r)" % got[-32:])


def test_stop():
    """At the shutdown timeout a handler still running is signalled: its
    request has its 503 already."""
    proc, port, log = start_microd([HOOKS, "--port", "0", "--bind", "127.0.0.1", "--log-format", "text",
                                    "--shutdown-timeout", "0.3"])
    if not ok(port is not None, "microd started, --shutdown-timeout 0.3"):
        return
    s = send(port, "stop-1", 5000, close=True)
    watching(log, "stop-1")
    proc.terminate()
    got = recv_all(s)
    s.close()
    what, _ = outcome(log, "stop-1")
    ok(got.startswith(b"HTTP/1.1 503") and what == "fired",
       "at the shutdown timeout a running handler's request_gone_fd turns readable (%s, %r)"
       % (what, got[:20]))
    ok(wait_exit(proc, 10) is not None, "  and microd exits")
    os.unlink(log)


def no_warnings(log):
    bad = re.findall(r'level=(?:warn|error) msg="gone_[^\n]*', read_log(log))
    ok(not bad, "  and the watch logged no error %r" % bad[:2])


def main():
    proc, port, log = start_microd([HOOKS, "--port", "0", "--bind", "127.0.0.1", "--log-format", "text",
                                    "--example-routes"])
    if not ok(port is not None, "microd (test build) started"):
        return done()
    test_close(port, log)
    test_reset(port, log)
    test_half_close(port, log)
    test_runs_on(port, log)
    test_stays(port, log)
    test_pipelined(port, log)
    test_io_thread(port, log)
    no_warnings(log)
    ok(stop_microd(proc, log) == 0, "microd stops")

    proc, port, log = start_microd([HOOKS, "--port", "0", "--bind", "127.0.0.1", "--log-format", "text",
                                    "--handler-threads", "1"])
    if ok(port is not None, "microd --handler-threads 1 started"):
        test_left_while_queued(log, port)
        test_cycles(port, log, 200)
        no_warnings(log)
        ok(stop_microd(proc, log) == 0, "microd stops")

    env = dict(os.environ, MICROD_TEST_GONE_LAG_MS="150")
    proc, port, log = start_microd([HOOKS, "--port", "0", "--bind", "127.0.0.1", "--log-format", "text",
                                    "--handler-threads", "1"], env=env)
    if ok(port is not None, "microd --handler-threads 1 started, its watcher lagging 150 ms"):
        test_stale(port, log)
        no_warnings(log)
        ok(stop_microd(proc, log) == 0, "microd stops")
    test_stop()
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
