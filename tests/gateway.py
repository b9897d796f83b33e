#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# gateway.py -- as many idle keep-alive connections as the descriptor limit
# allows, while 256 busy keep-alive clients on one thread get every answer
# within 2 s and /health answers on a new connection (TAP)
#
# One server thread (--threads 1), the default event loop and the default
# connection limit (which follows the descriptor limit). The idle set is held
# by a child process, as the test and microd each have the same descriptor
# limit (20,000 on the machine this was written on: 19,000 idle connections).
# Then the busy clients: rounds in which all 256 send at once (the burst that
# finds a worker asleep), and two seconds in which each sends again as soon as
# its answer is in (the load that keeps 128 and more requests ready at once).
# libmicrohttpd 0.9.75's epoll loop stalls on both without src/server/ticker.c.
# Correctness, not speed: the figures are printed, and `make bench` compares.
import os
import re
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time

from server import BIN, http_once, start_microd, stop_microd
from tap import done, ok

SANITIZED = "/sanitize/" in BIN or "/tsan/" in BIN
BUSY = 256
LIMIT_S = 2.0
ROUNDS = 20
LOAD_S = 2.0
REQ = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
BODY_END = b'{"status":"ok"}\n'

# The holder: opens n keep-alive connections, one answered request on each,
# says how many it holds, and keeps them until its stdin closes.
HOLDER = r"""
import resource, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
req = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
held = []
try:
    while len(held) < n:
        batch = []
        for _ in range(min(500, n - len(held))):
            s = socket.create_connection(("127.0.0.1", port), timeout=20)
            s.sendall(req)
            batch.append(s)
        for s in batch:
            got = b""
            while not got.endswith(b'{"status":"ok"}\n'):
                b = s.recv(4096)
                if not b:
                    raise OSError("closed")
                got += b
            held.append(s)
except OSError as e:
    print("error %d %s" % (len(held), e), flush=True)
print("held %d" % len(held), flush=True)
sys.stdin.read()
"""


def get(port, path, timeout=5):
    """(answer bytes or None, ms) for one request on a new connection."""
    t0 = time.monotonic()
    st, data = http_once(port, path, timeout=timeout)
    return (data if st is not None else None), (time.monotonic() - t0) * 1000


def health_ok(port):
    data, ms = get(port, "/health")
    return data is not None and data.startswith(b"HTTP/1.1 200 ") and data.endswith(BODY_END), ms


def gauge(port, name):
    data, _ = get(port, "/metrics")
    m = re.search(r"^%s (\d+)" % name, data.decode(errors="replace"), re.M) if data else None
    return int(m.group(1)) if m else None


def read_answer(s, buf):
    """Reads what is there; True once a whole /health answer is in buf[s]."""
    b = s.recv(65536)
    if not b:
        raise OSError("closed by the server")
    buf[s] += b
    if buf[s].endswith(BODY_END):
        buf[s] = b""
        return True
    return False


def bursts(conns):
    """ROUNDS rounds of all clients at once; (fewest answered in time, slowest ms)."""
    sel = selectors.DefaultSelector()
    buf = {s: b"" for s in conns}
    for s in conns:
        sel.register(s, selectors.EVENT_READ)
    fewest, slowest = len(conns), 0.0
    for _ in range(ROUNDS):
        t0 = time.monotonic()
        for s in conns:
            s.sendall(REQ)
        pending = set(conns)
        while pending and time.monotonic() - t0 < LIMIT_S:
            for k, _ in sel.select(0.1):
                if read_answer(k.fileobj, buf):
                    pending.discard(k.fileobj)
        fewest = min(fewest, len(conns) - len(pending))
        slowest = max(slowest, (time.monotonic() - t0) * 1000)
        if pending:
            break
    sel.close()
    return fewest, slowest


def load(conns):
    """Each client sends again once answered, for LOAD_S: (answers, worst
    wait in ms, clients left waiting longer than LIMIT_S)."""
    sel = selectors.DefaultSelector()
    buf = {s: b"" for s in conns}
    sent = {}
    for s in conns:
        s.sendall(REQ)
        sent[s] = time.monotonic()
        sel.register(s, selectors.EVENT_READ)
    answers, worst = 0, 0.0
    t0 = time.monotonic()
    while time.monotonic() - t0 < LOAD_S:
        for k, _ in sel.select(0.1):
            s = k.fileobj
            if read_answer(s, buf):
                now = time.monotonic()
                worst = max(worst, now - sent[s])
                answers += 1
                s.sendall(REQ)
                sent[s] = now
    # The last requests: every one answered within the limit too.
    end = time.monotonic()
    pending = set(conns)
    while pending and time.monotonic() - end < LIMIT_S:
        for k, _ in sel.select(0.1):
            if read_answer(k.fileobj, buf):
                worst = max(worst, time.monotonic() - sent[k.fileobj])
                pending.discard(k.fileobj)
    sel.close()
    return answers, worst * 1000, len(pending)


def probe_during(port, stop, results):
    """/health on a new connection every 200 ms until stop is set."""
    while not stop.is_set():
        results.append(health_ok(port))
        stop.wait(0.2)


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # microd holds the idle set, the busy clients and its own few hundred.
    want = max(0, hard - 1000)
    if SANITIZED:
        want = min(want, 5000)
    least = 3000 if SANITIZED else 15000
    proc, port, log = start_microd([BIN, "--bind", "127.0.0.1", "--port", "0", "--threads", "1",
                                    "--idle-timeout", "300", "--header-timeout", "300"])
    if not ok(port is not None, "microd starts with one thread"):
        proc.kill()
        return done()
    with open(log) as f:
        text = f.read()
    m = re.search(r"limits: (\d+) connections .*connection limit from the descriptor limit (\d+)", text)
    ok(m is not None and int(m.group(1)) >= want + BUSY,
       "the default connection limit follows the descriptor limit: %s" % (m.group(0)[8:] if m else text[-300:]))
    ok(re.search(r"threads \(epoll;", text) is not None, "and the default event loop is epoll")

    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(port), str(want)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = holder.stdout.readline().strip()
    if line.startswith("error"):
        print("# holder: %s" % line, flush=True)
        line = holder.stdout.readline().strip()
    held = int(line.split()[1]) if line.startswith("held ") else 0
    ok(held >= least and held == want,
       "%d idle keep-alive connections held, each answered once (wanted %d: the descriptor limit %d less 1000; "
       "at least %d)" % (held, want, hard, least))
    open_now = gauge(port, "microd_connections")
    ok(open_now is not None and open_now >= held, "microd_connections counts them: %s" % open_now)

    good, ms = health_ok(port)
    ok(good, "with them idle, /health answers on a new connection (%.1f ms)" % ms)

    conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(BUSY)]
    for s in conns:
        s.setblocking(False)
    got, slowest = bursts(conns)
    ok(got == BUSY, "%d busy keep-alive clients on one thread, all at once: every one answered within %.0f s "
       "in each of %d rounds (fewest %d, slowest round %.0f ms)" % (BUSY, LIMIT_S, ROUNDS, got, slowest))

    stop, probes = threading.Event(), []
    t = threading.Thread(target=probe_during, args=(port, stop, probes))
    t.start()
    try:
        answers, worst, late = load(conns)
    except OSError as e:
        answers, worst, late = 0, -1, BUSY
        print("# %s" % e, flush=True)
    stop.set()
    t.join()
    ok(late == 0 and 0 <= worst < LIMIT_S * 1000,
       "each sending again once answered, for %.0f s: every answer within %.0f s (%d answers, %.0f/s, worst wait "
       "%.0f ms)" % (LOAD_S, LIMIT_S, answers, answers / LOAD_S, worst))
    ok(len(probes) > 0 and all(g for g, _ in probes),
       "meanwhile /health answers on a new connection every time (%d/%d, slowest %.0f ms)"
       % (sum(1 for g, _ in probes if g), len(probes), max((ms for _, ms in probes), default=-1)))
    for s in conns:
        s.close()

    open_now = gauge(port, "microd_connections")
    ok(open_now is not None and open_now >= held, "the idle set is still open: microd_connections %s" % open_now)
    holder.stdin.close()
    holder.wait(timeout=30)
    ok(stop_microd(proc, log, timeout=30) == 0, "microd stops cleanly")
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
