#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# stress.py -- microd keeps answering and keeps its log valid when stderr is
# not read (TAP)
#
# stderr is a real pipe (shrunk to 4 KiB, as a stalled log shipper or
# journald under pressure leaves it) that the test reads, or does not, on
# purpose. Every load here is bounded in time and count and targets only
# 127.0.0.1.
import fcntl
import json
import os
import re
import resource
import select
import signal
import socket
import subprocess
import threading
import time

from server import BIN, recv_all, wait_exit
from tap import done, ok, skip

F_SETPIPE_SZ = 1031


def start(args):
    """microd with stderr on a 4 KiB pipe. Returns (proc, port, read end,
    the bytes read while waiting for the port)."""
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, 4096)
    proc = subprocess.Popen([BIN, "--bind", "127.0.0.1", "--port", "0", "--log-format", "json"] + args,
                            stderr=w)
    os.close(w)
    got, port = b"", None
    deadline = time.monotonic() + 10
    while port is None and time.monotonic() < deadline:
        if select.select([r], [], [], 0.1)[0]:
            b = os.read(r, 65536)
            if not b:
                break
            got += b
            m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", got)
            port = int(m.group(1)) if m else None
    return proc, port, r, got


def get(port, path, timeout=2.0, extra=b""):
    """One request on a new connection: (status or None, body, seconds)."""
    t0 = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.settimeout(timeout)
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"Connection: close\r\n\r\n")
        got = recv_all(s)
        s.close()
    except OSError:
        return None, b"", time.monotonic() - t0
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", got)
    return (int(m.group(1)) if m else None), got.partition(b"\r\n\r\n")[2], time.monotonic() - t0


def load(port, seconds, extra=b"", clients=4):
    """clients threads sending GET /version on keep-alive connections for
    seconds; returns the thread list and a stop event."""
    stop = threading.Event()
    req = b"GET /version HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"

    def run():
        deadline = time.monotonic() + seconds
        s = None
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                if s is None:
                    s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.sendall(req)
                got = b""
                while b"\r\n\r\n" not in got or not got.endswith(b"}\n"):
                    b = s.recv(65536)
                    if not b:
                        raise OSError("closed")
                    got += b
            except OSError:
                if s is not None:
                    s.close()
                s = None
        if s is not None:
            s.close()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    return threads, stop


def dropped(port):
    st, body, _ = get(port, "/metrics")
    m = re.search(rb"\nmicrod_log_lines_dropped_total (\d+)\n", body)
    return int(m.group(1)) if st == 200 and m else None


def read_all(r, chunk=65536, pause=0.0):
    """Reads the pipe to its end (microd has exited), pausing between reads."""
    got = b""
    while True:
        b = os.read(r, chunk)
        if not b:
            return got
        got += b
        if pause:
            time.sleep(pause)  # a slow reader is the condition under test


def lines_of(data):
    bad, parsed = [], []
    for line in data.split(b"\n")[:-1]:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            bad.append(line)
    return parsed, bad


def test_blocked_stderr():
    proc, port, r, head = start([])
    if not ok(port is not None, "microd starts with stderr on a 4 KiB pipe"):
        proc.kill()
        return
    threads, stop = load(port, 5)
    # Nobody reads stderr for these 5 s while the load runs.
    worst, answered, n = 0.0, 0, 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        st, body, took = get(port, "/health")
        n += 1
        answered += st == 200 and body == b'{"status":"ok"}\n'
        worst = max(worst, took)
        time.sleep(0.05)  # paces the probes; not a synchronisation
    for t in threads:
        t.join()
    ok(answered == n and worst < 0.1,
       "stderr unread for 5 s under load: %d of %d probes on new connections answered, slowest %.1f ms (< 100)"
       % (answered, n, n and worst * 1000))
    lost = dropped(port)
    ok(lost is not None and lost > 0, "microd_log_lines_dropped_total rose: %s" % lost)
    # Now the reader drains; microd is stopped and the pipe read to its end.
    reader = {}
    th = threading.Thread(target=lambda: reader.setdefault("data", read_all(r)), daemon=True)
    th.start()
    st, _, _ = get(port, "/version")
    proc.send_signal(signal.SIGTERM)
    status = wait_exit(proc, 15)
    th.join(10)
    os.close(r)
    parsed, bad = lines_of(head + reader.get("data", b""))
    ok(status == 0, "then it stops cleanly (exit %s)" % status)
    ok(parsed and not bad, "every one of the %d lines read is valid JSON (%d invalid%s)"
       % (len(parsed) + len(bad), len(bad), ": %r" % bad[0][:200] if bad else ""))
    report = [p for p in parsed if "lines dropped while stderr was not read" in p.get("msg", "")]
    counted = sum(int(re.match(r"log: (\d+)", p["msg"]).group(1)) for p in report)
    ok(report and report[0].get("level") == "warn" and counted >= lost,
       "once the log flows again it says how many lines were dropped (%d, counter %s)" % (counted, lost))
    states = [p["msg"] for p in parsed if p.get("msg", "").startswith("state: ")]
    ok(states[-3:] == ["state: ready -> draining", "state: draining -> stopping", "state: stopping -> stopped"],
       "the drain's state lines all reach stderr: %s" % states[-3:])


def test_long_lines():
    # Each User-Agent escapes to 6 bytes a byte: every access-log line is cut
    # at the 4096-byte line limit (PIPE_BUF), inside a string.
    proc, port, r, head = start([])
    if not ok(port is not None, "microd starts for the long-line test"):
        proc.kill()
        return
    reader = {}
    th = threading.Thread(target=lambda: reader.setdefault("data", read_all(r, 512, 0.001)), daemon=True)
    th.start()
    threads, stop = load(port, 2, extra=b"User-Agent: " + b"\x01" * 1500 + b"\r\n")
    for t in threads:
        t.join()
    proc.send_signal(signal.SIGTERM)
    wait_exit(proc, 15)
    th.join(20)
    os.close(r)
    data = head + reader.get("data", b"")
    parsed, bad = lines_of(data)
    cut = [p for p in parsed if p.get("truncated") is True and p.get("msg") == "request"]
    longest = max(len(l) + 1 for l in data.split(b"\n"))
    ok(cut and not bad and longest <= 4096,
       "4 clients, 12 KiB lines, a slow reader: %d lines, %d cut and marked, %d invalid, longest %d bytes (<= 4096)"
       % (len(parsed) + len(bad), len(cut), len(bad), longest))
    ok(cut and all(p.get("method") == "GET" and p.get("status") == 200 for p in cut[:50]),
       "a cut line keeps the fields before the cut")


def two_signals(args, second_when, what):
    """Fills stderr (nobody reads it), sends SIGTERM, waits until
    second_when(port) holds, sends another: it must exit 1 within 1 s."""
    proc, port, r, _ = start(args)
    if not ok(port is not None, "microd starts for the two-signal test, %s" % what):
        proc.kill()
        return
    threads, stop = load(port, 10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (dropped(port) or 0) > 0:
        pass
    stop.set()
    for t in threads:
        t.join()
    ok((dropped(port) or 0) > 0, "stderr is full and unread (lines are being dropped)")
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not second_when(port):
        pass
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    status = wait_exit(proc, 5)
    took = time.monotonic() - t0
    os.close(r)
    ok(status == 1 and took < 1.0, "a second SIGTERM %s, stderr blocked: exit %s after %.0f ms (< 1 s)"
       % (what, status, took * 1000))


def test_second_signal():
    two_signals(["--drain-delay", "5"], lambda port: get(port, "/ready")[0] == 503, "during the drain")


def test_signal_while_flushing():
    # The drain is over and microd waits for stderr to take its last lines.
    two_signals([], lambda port: get(port, "/health", timeout=0.5)[0] is None, "after the drain")


def rss(proc, key="VmRSS"):
    with open("/proc/%d/status" % proc.pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def sanitized():
    with open(BIN, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__tsan_init" in data


def settle(proc, bound_kib, seconds=5):
    """Polls RSS until it is at most bound_kib or seconds pass; the last."""
    deadline = time.monotonic() + seconds
    now = rss(proc)
    while now is not None and now > bound_kib and time.monotonic() < deadline:
        time.sleep(0.05)  # polls a value that has no event; bounded by the deadline
        now = rss(proc)
    return now


def test_memory_budget():
    # Defaults: --max-body 1m, --body-budget 8m. 16 bodies of 1 MiB at once
    # against 2 threads: 8 fit in the budget, 8 get 503 before their body.
    proc, port, r, _ = start(["--threads", "2"])
    if not ok(port is not None, "microd starts for the memory test"):
        proc.kill()
        return
    reader = threading.Thread(target=read_all, args=(r,), daemon=True)
    reader.start()
    idle = rss(proc)
    body = b"[" + b"1234567," * (131072 - 2) + b"1234567]"
    head = (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % len(body))
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(16)]
    for s in socks:
        s.sendall(head + body[:1000])
    answered = {}
    deadline = time.monotonic() + 10
    while len(answered) < 8 and time.monotonic() < deadline:
        ready = select.select([s for s in socks if s not in answered], [], [], 0.5)[0]
        for s in ready:
            got = b""
            while not got.endswith(b"}\n"):
                b = s.recv(65536)
                if not b:
                    break
                got += b
            answered[s] = got
    busy = [g for g in answered.values() if g.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: 1\r\n" in g
            and b'"detail":"too many request bodies are being read at once; retry"' in g]
    ok(len(answered) == 8 and len(busy) == 8,
       "16 bodies of 1 MiB at once, 8 MiB budget: 8 get 503 + Retry-After before their body (%d of %d)"
       % (len(busy), len(answered)))
    served = 0
    for s in socks:
        if s in answered:
            s.close()
            continue
        s.sendall(body[1000:])
        got = recv_all(s, 1 << 20)
        s.close()
        served += got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"1234567]\n")
    ok(served == 8, "the 8 within the budget are echoed whole (%d)" % served)
    # 16 bodies of 1 MiB at once that would cost jansson 24 times their size
    # ("[0,0,...]": 55 MB of RSS for 8 of them on 2 threads before the
    # parse-cost bound): each is refused, none parsed.
    dense = b"[" + b"0," * (512 * 1024 - 2) + b"0]"
    results = []

    def send_dense():
        try:
            results.append(post(port, dense)[0])
        except OSError:
            results.append(None)

    threads = [threading.Thread(target=send_dense) for _ in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    # A 503 comes before the body and the connection then closes: a client
    # still sending may get a reset in its place (None), never a 200.
    ok(len(results) == 16 and all(st in (413, 503, None) for st in results) and 413 in results,
       "16 dense 1 MiB bodies at once: each refused, 413, or 503 or a reset (%s)" % sorted(map(str, results)))
    peak = rss(proc, "VmHWM")
    if sanitized():
        skip("RSS bounds: a sanitizer build's RSS is the sanitizer's", 3)
    else:
        ok(peak < 32 << 10, "peak RSS %d KiB (idle %d KiB) < 32 MiB" % (peak, idle))
        after = settle(proc, idle + (4 << 10))
        ok(after <= idle + (4 << 10), "RSS after the burst falls back to %d KiB (<= idle + 4 MiB)" % after)
        # A burst of 2,000 keep-alive connections, each served once.
        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(2000)]
        for c in conns:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        for c in conns:
            c.recv(4096)
        during = rss(proc)
        for c in conns:
            c.close()
        after = settle(proc, idle + (4 << 10))
        ok(after <= idle + (4 << 10), "2,000 connections (%d KiB) closed: RSS falls back to %d KiB (<= idle + 4 MiB)"
           % (during, after))
    # Parse cost: a value every 2 bytes is refused before jansson sees it.
    dense = b"[" + b"0," * 5000 + b"0]"
    st, body_got, _ = post(port, dense)
    ok(st == 413 and b"more values than its size allows" in body_got, "a body of a value every 2 bytes: 413 (%s)" % st)
    ok(proc.poll() is None, "no crash")
    proc.send_signal(signal.SIGTERM)
    wait_exit(proc, 15)
    os.close(r)


def post(port, body):
    """POST /echo as a careful client does: it stops sending as soon as an
    answer comes (an early 503 or 413 is followed by a close, and a client
    that keeps sending would get a reset instead of reading it)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
              b"Connection: close\r\n\r\n" % len(body))
    try:
        for i in range(0, len(body), 65536):
            if select.select([s], [], [], 0)[0]:
                break
            s.sendall(body[i:i + 65536])
    except OSError:
        pass  # refused mid-send: what was answered still counts
    got = recv_all(s)
    s.close()
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", got)
    return (int(m.group(1)) if m else None), got.partition(b"\r\n\r\n")[2], got


def test_limit_over_threads():
    # --connection-limit holds over all threads: 20 clients on 2 threads all
    # get in, whichever thread wins each accept; with each of them in a
    # request (its body still to come: no connection waits for a head that
    # a new one could take the place of), the 21st is refused.
    proc, port, r, _ = start(["--threads", "2", "--connection-limit", "20"])
    if not ok(port is not None, "microd starts for the limit test"):
        proc.kill()
        return
    reader = threading.Thread(target=read_all, args=(r,), daemon=True)
    reader.start()
    held, served, busy = [], 0, 0
    for _ in range(20):
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        c.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        got = c.recv(4096)
        served += got.startswith(b"HTTP/1.1 200 ")
        c.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        busy += c.recv(4096).startswith(b"HTTP/1.1 100 ")  # its head is in
        held.append(c)
    extra = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        refused = extra.recv(4096) == b""
    except OSError:
        refused = True
    extra.close()
    ok(served == 20 and busy == 20 and refused,
       "limit 20 on 2 threads: 20 clients served (%d), each then in a request (%d), the 21st refused (%s)"
       % (served, busy, refused))
    answered = 0
    for c in held:
        c.sendall(b"{}")
        answered += c.recv(4096).startswith(b"HTTP/1.1 200 ")
        c.close()
    ok(answered == 20, "  and the 20 requests are answered once their bodies come (%d)" % answered)
    proc.send_signal(signal.SIGTERM)
    wait_exit(proc, 15)
    os.close(r)


def test_peer_flood():
    # Connections that send half a request and go make libmicrohttpd log a
    # warning each; with stderr unread they must not push out the drain's
    # state lines.
    proc, port, r, head = start([])
    if not ok(port is not None, "microd starts for the warning-flood test"):
        proc.kill()
        return
    for _ in range(3000):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"GET /health HTTP/1.1\r\n")
        c.close()
    proc.send_signal(signal.SIGTERM)
    data = {}
    th = threading.Thread(target=lambda: data.setdefault("d", read_all(r)), daemon=True)
    th.start()
    wait_exit(proc, 15)
    th.join(10)
    os.close(r)
    parsed, bad = lines_of(head + data.get("d", b""))
    states = [p["msg"] for p in parsed if p.get("msg", "").startswith("state: ")]
    ok(states[-3:] == ["state: ready -> draining", "state: draining -> stopping", "state: stopping -> stopped"]
       and not bad, "3,000 half requests with stderr unread: the drain's state lines all arrive (%s)" % states[-3:])


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    test_memory_budget()
    test_limit_over_threads()
    test_signal_while_flushing()
    test_peer_flood()
    test_blocked_stderr()
    test_long_lines()
    test_second_signal()
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
