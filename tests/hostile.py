#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# hostile.py -- a table of hostile requests over raw sockets (TAP)
#
# Each case is sent as raw bytes (an HTTP client library would refuse to
# send most of them) and must get its expected outcome: a status, or the
# connection closed. After every case a GET /health on a new connection must
# still answer 200, and at the end microd must still stop cleanly.
#
# Where a case is refused by libmicrohttpd 0.9.75 itself, its answer is the
# library's (an HTML body); where the library lets it through, microd refuses
# it with problem details (see framing_problem() in src/server.c). The
# "by" column says which.
import json
import random
import re
import socket
import time

from server import BIN, start_microd, stop_microd
from tap import done, ok




def exchange(port, data, timeout=5, chunks=None):
    """Sends data; returns (status or None, headers, body, closed)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(timeout)
    got = b""
    closed = False
    try:
        try:
            for piece in (chunks or [data]):
                s.sendall(piece)
        except OSError:
            pass  # refused mid-send: what was answered still counts
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                closed = True
                break
            if not b:
                closed = True
                break
            got += b
            head, sep, rest = got.partition(b"\r\n\r\n")
            m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
            if sep and m and len(rest) >= int(m.group(1)):
                # A whole response: is the connection closed after it?
                s.settimeout(0.5 if b"connection: close" in head.lower() else 0.05)
    finally:
        s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
    return (int(m.group(1)) if m else None), head.decode("latin-1"), body, closed


def health(port):
    st, _, body, _ = exchange(port, b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    return st == 200 and body == b'{"status":"ok"}\n'


def echo(body, ctype=b"application/json"):
    return (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: " + ctype +
            b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


def problem(body, status):
    try:
        j = json.loads(body)
    except ValueError:
        return False
    return j.get("status") == status and isinstance(j.get("detail"), str) and "request_id" in j


G = b"GET /health HTTP/1.1\r\nHost: t\r\n"
P = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
rng = random.Random(9112)

# (name, bytes, expected status or "closed", who refuses it: "mhd", "microd" or "-")
CASES = [
    ("malformed request line", b"GET\r\n\r\n", "closed", "mhd"),
    ("request line with no version", b"GET /health\r\nHost: t\r\n\r\n", 400, "mhd"),
    ("unknown protocol name", b"GET /health HTXP/1.1\r\nHost: t\r\n\r\n", 400, "mhd"),
    ("HTTP/2.0 request line", b"GET /health HTTP/2.0\r\nHost: t\r\n\r\n", 505, "mhd"),
    ("HTTP/2 connection preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "mhd"),
    ("HTTP/1.1 without Host", b"GET /health HTTP/1.1\r\n\r\n", 400, "mhd"),
    ("two Host headers", G + b"Host: u\r\n\r\n", 400, "microd"),
    ("whitespace before a header colon", b"GET /health HTTP/1.1\r\nHost : t\r\n\r\n", 400, "mhd"),
    ("header line without a colon", G + b"Broken\r\n\r\n", 400, "mhd"),
    ("64 KiB URI", b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "mhd"),
    ("1 MiB of headers", G + b"X-A: " + b"a" * (1 << 20) + b"\r\n\r\n", 431, "mhd"),
    ("10,000 headers", G + b"".join(b"X-%d: v\r\n" % i for i in range(10000)) + b"\r\n", 431, "mhd"),
    # 0.9.75 ends the target at the NUL: "/hea", which no route matches.
    ("NUL byte in the request target", b"GET /hea\x00lth HTTP/1.1\r\nHost: t\r\n\r\n", 404, "microd"),
    ("Content-Length and Transfer-Encoding",
     P + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400, "microd"),
    ("two differing Content-Lengths", P + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{} ", 400, "microd"),
    ("non-numeric Content-Length", P + b"Content-Length: abc\r\n\r\n{}", 400, "mhd"),
    ("negative Content-Length", P + b"Content-Length: -2\r\n\r\n{}", 400, "mhd"),
    ("Content-Length beyond 64 bits", P + b"Content-Length: 99999999999999999999999\r\n\r\n{}", 413, "mhd"),
    ("Transfer-Encoding: gzip", P + b"Transfer-Encoding: gzip\r\n\r\n{}", 501, "microd"),
    ("Transfer-Encoding: gzip, chunked", P + b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
     501, "microd"),
    ("Transfer-Encoding on HTTP/1.0",
     b"POST /echo HTTP/1.0\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"2\r\n{}\r\n0\r\n\r\n", 400, "microd"),
    ("non-hex chunk size", P + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400, "mhd"),
    # A legal 64-bit size that never arrives: closed at --idle-timeout.
    ("chunk size 0xFFFFFFFFFFFFFFFF", P + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n{}\r\n",
     "closed", "idle timeout"),
    ("chunk without its CRLF", P + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n", 400, "mhd"),
    ("CONNECT", b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n", 404, "microd"),
    ("TRACE", b"TRACE /health HTTP/1.1\r\nHost: t\r\n\r\n", 405, "microd"),
    ("TLS ClientHello", bytes.fromhex("160301020001000001fc0303") + bytes(rng.randrange(256) for _ in range(500)),
     "closed", "mhd"),
    ("4 KiB of random bytes", bytes(rng.randrange(256) for _ in range(4096)), "closed", "mhd"),
    ("truncated JSON", echo(b'{"a":[1,2'), 400, "microd"),
    ("100,000-deep nesting", echo(b"[" * 100000 + b"]" * 100000), 400, "microd"),
    ("an integer beyond 64 bits", echo(b"[123456789012345678901234567890]"), 400, "microd"),
    ("a real beyond double", echo(b"[1e999]"), 400, "microd"),
    ("invalid UTF-8 in a string", echo(b'["\xff\xfe"]'), 400, "microd"),
    ("a UTF-8 byte-order mark", echo(b'\xef\xbb\xbf{"a":1}'), 400, "microd"),
    ("wrong Content-Type", echo(b'{"a":1}', b"text/plain"), 415, "microd"),
]

# Ambiguous framing: refused, and the connection closed, since what follows
# the headers cannot be trusted to be a next request.
MUST_CLOSE = {"two Host headers", "Content-Length and Transfer-Encoding", "two differing Content-Lengths",
              "Transfer-Encoding: gzip", "Transfer-Encoding: gzip, chunked", "Transfer-Encoding on HTTP/1.0",
              "non-numeric Content-Length", "negative Content-Length"}

# Accepted on purpose: RFC 9112 lets a server accept these, and they reach the
# route as the client meant them.
ACCEPTED = [
    ("absolute-form target", b"GET http://t/health HTTP/1.1\r\nHost: t\r\n\r\n", 200),
    ("bare LF line ends", b"GET /health HTTP/1.1\nHost: t\n\n", 200),
    ("obs-fold continuation line", G + b"X-A: a\r\n b\r\n\r\n", 200),
    ("Transfer-Encoding: Chunked (case-insensitive)",
     P + b"Transfer-Encoding: Chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 200),
    ("two equal Content-Lengths", P + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 200),
]


def main():
    proc, port, log = start_microd([BIN, "--bind", "127.0.0.1", "--port", "0", "--threads", "2",
                                    "--idle-timeout", "2"])
    if not ok(port is not None, "microd starts"):
        proc.kill()
        return done()

    for name, data, want, by in CASES:
        st, head, body, closed = exchange(port, data)
        if want == "closed":
            good = closed and st in (None, 400)
            what = "closed" + (" after %s" % st if st else "")
        else:
            good = st == want and (closed or name not in MUST_CLOSE)
            if by == "microd":
                good = good and problem(body, want)
            what = "%s%s" % (st, ", closed" if closed else "")
        ok(good, "%s -> %s (want %s, refused by %s)" % (name, what, want, by))
        ok(health(port), "  and /health still answers 200 after it")

    for name, data, want in ACCEPTED:
        st, _, body, _ = exchange(port, data)
        ok(st == want, "%s -> %s (accepted)" % (name, st))

    # A body shorter than its Content-Length, then the client goes away.
    st, _, _, closed = exchange(port, None, timeout=2,
                                chunks=[P + b"Content-Length: 100\r\n\r\n{\"a\":"])
    ok(st is None, "a body cut short gets no answer (the client is gone)")
    ok(health(port), "  and /health still answers 200 after it")

    # NUL inside a header value: 0.9.75 cuts the value at the NUL (RFC 9110
    # asks to reject or replace it with SP); what reaches the route is the
    # value's first part, never the bytes after the NUL.
    st, head, _, _ = exchange(port, G + b"X-Request-Id: abc\x00def\r\nConnection: close\r\n\r\n")
    m = re.search(r"X-Request-Id: (\S+)", head, re.I)
    ok(st == 200 and m and m.group(1) == "abc", "NUL in a header value: the value ends at the NUL (%s)"
       % (m.group(1) if m else None))

    # Request heads around the 16 KiB connection pool. libmicrohttpd 0.9.75
    # answers a head far beyond the pool with a clean 431, but in a band
    # just above what fits it either closes without any answer ("Closing
    # connection (failed to create response header)") or sends its 431
    # head twice, the second one where the body should be. Nothing outside
    # the library can reach that path (the handler never runs), so this pins
    # it: if a later libmicrohttpd fixes it, this fails and README's
    # "Limits and hostile input" must be updated.
    seen = {}
    for n in range(7000, 24001, 250):
        st, _, body, closed = exchange(port, G + b"Cookie: " + b"a" * n + b"\r\nConnection: close\r\n\r\n")
        if st == 200 and body == b'{"status":"ok"}\n':
            kind = "200"
        elif st == 431 and b"HTTP/1." in body:
            kind = "431 head sent twice"
        elif st == 431 and closed:
            kind = "431"
        elif st is None and closed:
            kind = "closed, no answer"
        else:
            kind = "other: %s closed=%s" % (st, closed)
        seen[n] = kind
    bands, start = [], 7000
    for n in sorted(seen):
        if seen[n] != seen[start]:
            bands.append("%d-%d: %s" % (start, n - 250, seen[start]))
            start = n
    bands.append("%d-%d: %s" % (start, max(seen), seen[start]))
    print("# cookie bytes -> outcome: " + "; ".join(bands))
    ok(all(k == "200" for n, k in seen.items() if n <= 7500), "heads up to a 7,500-byte cookie are served")
    ok(all(not k.startswith("other") for k in seen.values()),
       "every oversized head ends within 5 s: 431 or closed, never a hang or another status")
    ok(all(k == "431" for n, k in seen.items() if n >= 20000), "heads beyond the pool get one clean 431")
    ok("closed, no answer" in seen.values() and "431 head sent twice" in seen.values(),
       "pinned libmicrohttpd 0.9.75 defect: just above the pool, no answer or a doubled 431 head")
    ok(health(port), "  and /health still answers 200 after all of them")

    with open(log) as f:
        text = f.read()
    status = stop_microd(proc, log)
    ok(status == 0, "microd stops cleanly after all of it (exit %s)" % status)
    ok("AddressSanitizer" not in text and "runtime error" not in text, "no sanitizer report in the log")
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
