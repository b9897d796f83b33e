#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# hostile.py -- a table of hostile requests over raw sockets (TAP)
#
# Each case is sent as raw bytes (an HTTP client library would refuse to
# send most of them) and must get its expected outcome, and for a refusal the
# reason: microd's problem-details "detail" (the rule in src/policy.c or
# src/server/ that answered), or the text of libmicrohttpd's own error page.
# Every case keeps the rest of the request valid (a correct Host, a correct
# length) unless it is about that part, so it cannot pass through a different
# rule. After every case a GET /health on a new connection must still answer
# 200, and at the end microd must still stop cleanly.
import json
import random
import re
import socket
import time

from server import BIN, poll, recv_all, start_microd, stop_microd
from tap import done, ok


def exchange(port, data, timeout=5, chunks=None, raw=False):
    """Sends data; returns (status or None, headers, body, closed), with the
    whole byte stream received as a fifth item when raw is set."""
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
    result = (int(m.group(1)) if m else None), head.decode("latin-1"), body, closed
    return result + (got,) if raw else result


def health(port):
    st, _, body, _ = exchange(port, b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    return st == 200 and body == b'{"status":"ok"}\n'


def echo(body, ctype=b"application/json"):
    return (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: " + ctype +
            b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


def detail_of(body, status):
    """The detail of a problem-details body with this status, else None."""
    try:
        j = json.loads(body)
    except ValueError:
        return None
    if j.get("status") != status or "request_id" not in j:
        return None
    return j.get("detail")


G = b"GET /health HTTP/1.1\r\nHost: t\r\n"
P = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
rng = random.Random(9112)

# What libmicrohttpd 0.9.75's own error pages say (src/microhttpd/connection.c).
MHD_MALFORMED = "Your HTTP request was syntactically incorrect."
MHD_NO_HOST = "requests must include a &quot;Host:&quot; header"
MHD_BAD_LENGTH = "wrong value for <b>Content-Length</b> header"
MHD_HUGE_LENGTH = "too large value for <b>Content-Length</b> header"
MHD_BAD_CHUNK = "Your HTTP chunked encoding was syntactically incorrect."
MHD_TOO_BIG = "Your HTTP header was too big"
MHD_OLD_VERSION = "Requested HTTP version is not supported"

BAD_NAME = "invalid header field name"
FOLDED = "obs-fold: a header field continued on the next line"
COLON = "a NUL byte, or a line that starts with a colon, at the end of the header section"
BARE_CR = "a CR in a header field value"
NO_HOST = "an HTTP/1.1 request without Host"
BAD_HOST = "invalid Host header"
SPACE = "a space in the request target"
BAD_AUTHORITY = "invalid authority in the request target"
EXTENDS = "header field name extends a framing header's name (obs-fold?)"
PATH_CTL = "a control byte in the request path"
QUERY_CTL = "a control byte or %00 in the query string"
BAD_PCT = "malformed percent-encoding in the request target"
TOO_LARGE = "the request body is larger than the limit"

# (name, bytes, expected status or "closed", who refuses it: "mhd", "microd"
# or "-", the reason: microd's detail or a piece of libmicrohttpd's page)
CASES = [
    ("malformed request line", b"GET\r\n\r\n", "closed", "mhd", None),
    ("request line with no version", b"GET /health\r\nHost: t\r\n\r\n", 400, "mhd", MHD_MALFORMED),
    ("unknown protocol name", b"GET /health HTXP/1.1\r\nHost: t\r\n\r\n", 400, "mhd", MHD_MALFORMED),
    ("HTTP/2.0 request line", b"GET /health HTTP/2.0\r\nHost: t\r\n\r\n", 505, "mhd", MHD_OLD_VERSION),
    ("HTTP/2 connection preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "mhd", MHD_OLD_VERSION),
    ("HTTP/1.1 without Host", b"GET /health HTTP/1.1\r\n\r\n", 400, "microd", NO_HOST),
    ("a Host with a space", b"GET /health HTTP/1.1\r\nHost: a b/c\r\n\r\n", 400, "microd", BAD_HOST),
    ("a Host with userinfo", b"GET /health HTTP/1.1\r\nHost: u@t\r\n\r\n", 400, "microd", BAD_HOST),
    ("a Host with a bad port", b"GET /health HTTP/1.1\r\nHost: t:8x\r\n\r\n", 400, "microd", BAD_HOST),
    ("two Host headers", G + b"Host: u\r\n\r\n", 400, "microd", "more than one Host header"),
    ("header line without a colon", G + b"Broken\r\n\r\n", 400, "mhd", MHD_MALFORMED),
    # Header names: every byte class outside the RFC 9110 token set.
    ("space before a header colon", G + b"X-A : b\r\n\r\n", 400, "microd", BAD_NAME),
    ("tab before a header colon", G + b"X-A\t: b\r\n\r\n", 400, "microd", BAD_NAME),
    ("vertical tab before a header colon", G + b"X-A\x0b: b\r\n\r\n", 400, "microd", BAD_NAME),
    ("a control byte in a header name", G + b"X\x01A: b\r\n\r\n", 400, "microd", BAD_NAME),
    ("DEL in a header name", G + b"X\x7fA: b\r\n\r\n", 400, "microd", BAD_NAME),
    ("a byte above 0x7f in a header name", G + b"X\xc3\xa9: b\r\n\r\n", 400, "microd", BAD_NAME),
    # As the first field only: after another field, 0.9.75 ends the header
    # section at a line that starts with a colon (pinned in main()).
    ("an empty header name", b"GET /health HTTP/1.1\r\n: foo\r\nHost: t\r\n\r\n", 400, "microd", BAD_NAME),
    ("a space inside a header name", G + b"X Kit: v\r\n\r\n", 400, "microd", BAD_NAME),
    ("separators in a header name", G + b"X(y)@{}: foo\r\n\r\n", 400, "microd", BAD_NAME),
] + [
    ("separator %r in a header name" % chr(c), G + b"X" + bytes([c]) + b"A: b\r\n\r\n", 400, "microd", BAD_NAME)
    for c in b'()<>@,;\\"/[]?={}'
] + [
    ("a first header line that starts with a space", b"GET /health HTTP/1.1\r\n X: y\r\nHost: t\r\n\r\n",
     400, "microd", BAD_NAME),
    ("Host with a space before its colon, beside a Host", G + b"Host : b\r\n\r\n", 400, "microd", BAD_NAME),
    ("Host with a space before its colon, alone", b"GET /health HTTP/1.1\r\nHost : t\r\n\r\n", 400, "microd",
     BAD_NAME),
    ("Transfer-Encoding with a space before its colon",
     P + b"Transfer-Encoding : chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400, "microd", BAD_NAME),
    ("Content-Length with a space before its colon", P + b"Content-Length : 2\r\n\r\n{}", 400, "microd", BAD_NAME),
    ("Transfer-Encoding with a vertical tab before its colon",
     P + b"Transfer-Encoding\x0b: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400, "microd", BAD_NAME),
    # obs-fold: libmicrohttpd glues the next line onto the field's name;
    # microd tells a folded field by where the library put it.
    # The same name sent as is, not folded: refused by the name rule.
    ("a name that extends Content-Length", P + b"Content-Length0: 2\r\nContent-Length: 2\r\n\r\n{}", 400, "microd",
     EXTENDS),
    ("a name that extends Host", G + b"Hostname: x\r\n\r\n", 400, "microd", EXTENDS),
    ("folded Content-Length (name becomes Content-Length0)", P + b"Content-Length: 2\r\n 0\r\n\r\n{}", 400,
     "microd", FOLDED),
    ("folded Transfer-Encoding", P + b"Transfer-Encoding: chunked\r\n x\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400,
     "microd", FOLDED),
    ("folded Host beside another Host", G + b"Host: a\r\n b\r\n\r\n", 400, "microd", FOLDED),
    ("folded only Host, HTTP/1.1", b"GET /health HTTP/1.1\r\nHost: t\r\n x\r\n\r\n", 400, "microd", FOLDED),
    ("folded Host, HTTP/1.0", b"GET /health HTTP/1.0\r\nHost: t\r\n x\r\n\r\n", 400, "microd", FOLDED),
    ("a folded line with a space in it", G + b"X-A: a\r\n b c\r\n\r\n", 400, "microd", FOLDED),
    ("a fold that completes Content-Length", G + b"Content-:   2\r\n Length\r\n\r\n{}", 400, "microd", FOLDED),
    ("a fold that completes Transfer-Encoding",
     P + b"Transfer-:  chunked\r\n Encoding\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400, "microd", FOLDED),
    ("a fold that completes Host", b"GET /health HTTP/1.0\r\nHo:  evil\r\n st\r\n\r\n", 400, "microd", FOLDED),
    ("a fold that makes an X-Request-Id", G + b"X-Request-:  injected\r\n Id\r\n\r\n", 400, "microd", FOLDED),
    ("a folded X-Request-Id", G + b"X-Request-Id: abc\r\n def\r\n\r\n", 400, "microd", FOLDED),
    ("a tab-folded field", G + b"X-A: a\r\n\tb\r\n\r\n", 400, "microd", FOLDED),
    # A line that starts with a colon ends the head in 0.9.75.
    ("a ':x' line after a field", G + b":x\r\nX-A: b\r\n\r\n", 400, "microd", COLON),
    ("a lone ':' line after a field", G + b":\r\nX-A: b\r\n\r\n", 400, "microd", COLON),
    ("a ': x' line as the last field", G + b": x\r\n\r\n", 400, "microd", COLON),
    # Values and targets.
    ("a bare CR in a header value", G + b"X-A: a\rContent-Length: 5\r\n\r\n", 400, "microd", BARE_CR),
    ("a space in the target", b"GET /hea lth HTTP/1.1\r\nHost: t\r\n\r\n", 400, "microd", SPACE),
    ("a control byte in an absolute-form authority", b"GET http://t\x01x/health HTTP/1.1\r\nHost: t\r\n\r\n",
     400, "microd", BAD_AUTHORITY),
    ("userinfo in an absolute-form target", b"GET http://u@t/health HTTP/1.1\r\nHost: t\r\n\r\n", 400,
     "microd", BAD_AUTHORITY),
    ("64 KiB URI", b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "mhd", MHD_TOO_BIG),
    ("1 MiB of headers", G + b"X-A: " + b"a" * (1 << 20) + b"\r\n\r\n", 431, "mhd", MHD_TOO_BIG),
    ("10,000 headers", G + b"".join(b"X-%d: v\r\n" % i for i in range(10000)) + b"\r\n", 431, "mhd", MHD_TOO_BIG),
    # Targets: microd decodes the raw target itself.
    ("%00 in the path", b"GET /metrics%00.css HTTP/1.1\r\nHost: t\r\n\r\n", 400, "microd", PATH_CTL),
    ("%00 then dot segments", b"GET /health%00/../admin HTTP/1.1\r\nHost: t\r\n\r\n", 400, "microd", PATH_CTL),
    ("%0A in the path", b"GET /health%0A HTTP/1.1\r\nHost: t\r\n\r\n", 400, "microd", PATH_CTL),
    ("%7F in the path", b"GET /health%7f HTTP/1.1\r\nHost: t\r\n\r\n", 400, "microd", PATH_CTL),
    ("a raw control byte in the path", b"GET /hea\x01lth HTTP/1.1\r\nHost: t\r\n\r\n", 400, "microd", PATH_CTL),
    ("%00 in an absolute-form target", b"GET http://t/metrics%00.css HTTP/1.1\r\nHost: t\r\n\r\n", 400,
     "microd", PATH_CTL),
    ("%00 in the query", b"GET /health?x=%00 HTTP/1.1\r\nHost: t\r\n\r\n", 400, "microd", QUERY_CTL),
    ("a raw control byte in the query", b"GET /health?x=\x7f HTTP/1.1\r\nHost: t\r\n\r\n", 400, "microd",
     QUERY_CTL),
    ("a percent sign without two hex digits", b"GET /he%zzalth HTTP/1.1\r\nHost: t\r\n\r\n", 400, "microd",
     BAD_PCT),
    ("a percent sign at the end of the path", b"GET /health% HTTP/1.1\r\nHost: t\r\n\r\n", 400, "microd",
     BAD_PCT),
    # 0.9.75 ends the target at a raw NUL; microd sees where it lay.
    ("raw NUL byte in the request target", b"GET /hea\x00lth HTTP/1.1\r\nHost: t\r\n\r\n", 400, "microd",
     "a NUL byte in the request target"),
    ("raw NUL byte, then a path", b"GET /health\x00/../admin HTTP/1.1\r\nHost: t\r\n\r\n", 400, "microd",
     "a NUL byte in the request target"),
    ("a NUL byte in a header value", G + b"X-Request-Id: abc\x00def\r\nConnection: close\r\n\r\n", 400, "microd",
     "a NUL byte in a header field value"),
    ("a NUL byte in the last header value", G + b"X-Request-Id: abc\x00def\r\n\r\n", 400, "microd", COLON),
    ("a NUL byte ending the last header value", G + b"X-A: abc\x00\r\n\r\n", 400, "microd", COLON),
    ("a NUL line after a field, CRLF", G + b"\x00\r\nX-A: b\r\n\r\n", 400, "microd", COLON),
    # Framing.
    ("Content-Length and Transfer-Encoding",
     P + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400, "microd",
     "both Content-Length and Transfer-Encoding"),
    ("two differing Content-Lengths", P + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{} ", 400, "microd",
     "Content-Length headers that differ"),
    ("non-numeric Content-Length", P + b"Content-Length: abc\r\n\r\n{}", 400, "mhd", MHD_BAD_LENGTH),
    ("negative Content-Length", P + b"Content-Length: -2\r\n\r\n{}", 400, "mhd", MHD_BAD_LENGTH),
    ("Content-Length beyond 64 bits", P + b"Content-Length: 99999999999999999999999\r\n\r\n{}", 413, "mhd",
     MHD_HUGE_LENGTH),
    # libmicrohttpd takes "chunked " for another coding: so does microd.
    ("Transfer-Encoding: chunked with a trailing blank",
     P + b"Transfer-Encoding: chunked \r\n\r\n2\r\n{}\r\n0\r\n\r\n", 501, "microd",
     "only the chunked transfer coding is supported"),
    ("Transfer-Encoding: gzip", P + b"Transfer-Encoding: gzip\r\n\r\n{}", 501, "microd",
     "only the chunked transfer coding is supported"),
    ("Transfer-Encoding: gzip, chunked", P + b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
     501, "microd", "only the chunked transfer coding is supported"),
    ("Transfer-Encoding on HTTP/1.0",
     b"POST /echo HTTP/1.0\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"2\r\n{}\r\n0\r\n\r\n", 400, "microd", "Transfer-Encoding in an HTTP/1.0 request"),
    ("non-hex chunk size", P + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400, "mhd",
     MHD_BAD_CHUNK),
    # A legal 64-bit size that never arrives: closed at --idle-timeout.
    ("chunk size 0xFFFFFFFFFFFFFFFF", P + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n{}\r\n",
     "closed", "idle timeout", None),
    ("chunk without its CRLF", P + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n", 400, "mhd",
     MHD_BAD_CHUNK),
    # Trailers get the header-name rules, and may not frame or route.
    ("a trailer with an invalid name",
     P + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX(y): z\r\n\r\n", 400, "microd", BAD_NAME),
    ("a trailer with a space before its colon",
     P + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-T : z\r\n\r\n", 400, "microd", BAD_NAME),
    ("Content-Length as a trailer",
     P + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nContent-Length: 5\r\n\r\n", 400, "microd",
     "a framing header in the trailer section"),
    ("CONNECT", b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n", 404, "microd", "no route for CONNECT t:443"),
    ("TRACE", b"TRACE /health HTTP/1.1\r\nHost: t\r\n\r\n", 405, "microd", "TRACE is not allowed on /health"),
    ("TLS ClientHello", bytes.fromhex("160301020001000001fc0303") + bytes(rng.randrange(256) for _ in range(500)),
     "closed", "mhd", None),
    ("4 KiB of random bytes", bytes(rng.randrange(256) for _ in range(4096)), "closed", "mhd", None),
    ("truncated JSON", echo(b'{"a":[1,2'), 400, "microd", "invalid JSON at line 1"),
    ("100,000-deep nesting", echo(b"[" * 100000 + b"]" * 100000), 413, "microd",
     "the JSON body holds more values than its size allows (one per 8 bytes, plus 64)"),
    # Deeper than jansson's 2048 levels, padded to pass the value bound.
    ("2,100-deep nesting", echo(b"[" * 2100 + b" " * 20000 + b"]" * 2100), 400, "microd",
     "maximum parsing depth reached"),
    ("an integer beyond 64 bits", echo(b"[123456789012345678901234567890]"), 400, "microd", "too big integer"),
    ("a real beyond double", echo(b"[1e999]"), 400, "microd", "real number overflow"),
    ("invalid UTF-8 in a string", echo(b'["\xff\xfe"]'), 400, "microd", "unable to decode byte"),
    ("a UTF-8 byte-order mark", echo(b'\xef\xbb\xbf{"a":1}'), 400, "microd", "invalid token"),
    ("a JSON body denser than one value per 8 bytes", echo(b"[" + b"0," * 1000 + b"0]"), 413, "microd",
     "the JSON body holds more values than its size allows (one per 8 bytes, plus 64)"),
    ("wrong Content-Type", echo(b'{"a":1}', b"text/plain"), 415, "microd",
     "the request body must be application/json or application/*+json"),
]

# libmicrohttpd 0.9.75 refuses a bad Content-Length while it reads the head
# and sends its status head twice, the second copy where the body belongs.
MHD_HEAD_TWICE = {"non-numeric Content-Length", "negative Content-Length", "Content-Length beyond 64 bits"}

# The JSON errors are about a body that was read whole: the connection
# stays open after them (415 is refused before the body, and closes).
JSON_ERRORS = {"a JSON body denser than one value per 8 bytes", "2,100-deep nesting", "truncated JSON", "100,000-deep nesting", "an integer beyond 64 bits", "a real beyond double",
               "invalid UTF-8 in a string", "a UTF-8 byte-order mark"}

# Every refusal of a head is followed by a closed connection: what follows a
# refused head cannot be trusted to be a next request. Only the JSON errors
# of a well-framed body keep it open.
KEEPS_OPEN = {"CONNECT", "TRACE"}

# Accepted on purpose: RFC 9112 lets a server accept these, and they reach the
# route as the client meant them.
ACCEPTED = [
    ("absolute-form target", b"GET http://t/health HTTP/1.1\r\nHost: t\r\n\r\n", 200),
    ("a percent-encoded newline in the query", b"GET /health?x=%0A HTTP/1.1\r\nHost: t\r\n\r\n", 200),
    ("percent-encoded path (%68ealth)", b"GET /%68ealth HTTP/1.1\r\nHost: t\r\n\r\n", 200),
    ("bare LF line ends", b"GET /health HTTP/1.1\nHost: t\n\n", 200),
    ("Transfer-Encoding: Chunked (case-insensitive)",
     P + b"Transfer-Encoding: Chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 200),
    ("a trailer with a good name", P + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-T: 5\r\n\r\n",
     200),
    ("two equal Content-Lengths", P + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 200),
    ("trailing blanks after a Host (not part of the value)", b"GET /health HTTP/1.1\r\nHost: t \t\r\n\r\n", 200),
    ("an empty Host (a target without an authority)", b"GET /health HTTP/1.1\r\nHost:\r\n\r\n", 200),
    ("a Host with an IPv6 literal and a port", b"GET /health HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 200),
    ("trailing spaces on the last field", G + b"X-A: b   \r\n\r\n", 200),
    ("a field with an empty value last", G + b"X-A:\r\n\r\n", 200),
    ("HTTP/1.0 with no fields at all", b"GET /health HTTP/1.0\r\n\r\n", 200),
    ("bare LF line ends with no fields", b"GET /health HTTP/1.0\n\n", 200),
    ("every token byte class in a header name", G + b"!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n", 200),
    ("a header name that merely starts like Host_ (not extended)", G + b"X-Host: v\r\n\r\n", 200),
]

# Requests that smuggle a second one past a proxy that reads the framing
# differently. Each must get exactly one answer, the refusal; the smuggled
# GET /version must never be answered.
SMUGGLED = b"GET /version HTTP/1.1\r\nHost: t\r\n\r\n"
SMUGGLING = [
    ("Transfer-Encoding : chunked beside Content-Length",
     P + b"Transfer-Encoding : chunked\r\nContent-Length: 2\r\n\r\n{}" + SMUGGLED, BAD_NAME),
    ("Content-Length : N beside Transfer-Encoding: chunked",
     P + b"Content-Length : %d\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % (5 + len(SMUGGLED)) + SMUGGLED,
     BAD_NAME),
    ("a folded Content-Length",
     P + b"Content-Length: %d\r\n %d\r\n\r\n" % (len(SMUGGLED) // 10, len(SMUGGLED) % 10) + SMUGGLED, FOLDED),
    ("a folded Transfer-Encoding beside Content-Length",
     P + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n , x\r\n\r\n{}" + SMUGGLED, FOLDED),
    ("a fold that completes Content-Length",
     G + b"Content-:   %d\r\n Length\r\n\r\n" % len(SMUGGLED) + SMUGGLED, FOLDED),
    ("a ': x' line before a request line", G + b": x\r\n" + SMUGGLED, COLON),
]


def cookie_memory():
    """microd.8, LIMITS: a Cookie of 8 KiB needs --connection-memory 18k
    (it counts twice); 16k refuses it."""
    head = G + b"Cookie: " + b"a" * 8192 + b"\r\nConnection: close\r\n\r\n"
    for mem, want in (("16k", 431), ("18k", 200)):
        proc, port, log = start_microd([BIN, "--bind", "127.0.0.1", "--port", "0", "--connection-memory", mem])
        if not ok(port is not None, "microd --connection-memory %s starts" % mem):
            proc.kill()
            continue
        st, _, _, _ = exchange(port, head)
        ok(st == want, "  a head with an 8 KiB Cookie: %s (want %d)" % (st, want))
        stop_microd(proc, log)


def chunked_over_limit():
    """A chunked body cannot be refused until it ends (0.9.75 queues a reply
    only before the body or after all of it). microd reads up to --max-body
    more (at least 64 KiB) and answers 413; past that it closes."""
    proc, port, log = start_microd([BIN, "--bind", "127.0.0.1", "--port", "0", "--threads", "2",
                                    "--max-body", "4k"])
    if not ok(port is not None, "microd --max-body 4k starts"):
        proc.kill()
        return
    chunk = b"400\r\n" + b" " * 1024 + b"\r\n"
    head = P + b"Transfer-Encoding: chunked\r\n\r\n"
    st, _, body, closed = exchange(port, head + b"1\r\n[\r\n" + chunk * 40 + b"1\r\n]\r\n0\r\n\r\n")
    ok(st == 413 and detail_of(body, 413) == TOO_LARGE and closed,
       "a 40 KiB chunked body against --max-body 4k (within the 64 KiB budget) -> 413 %r at its end, closed"
       % detail_of(body, 413))
    st, _, body, closed = exchange(port, head + b"1\r\n[\r\n" + chunk * 3 + b"1\r\n]\r\n0\r\n\r\n")
    ok(st == 200 and body == b"[]\n", "a 3 KiB chunked body is within the limit -> %s" % st)

    # An endless chunked body: the connection must break long before the
    # client has sent 64 MiB (the old discard limit); loopback buffers hold a
    # few MiB, the budget 64 KiB.
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(10)
    s.sendall(head)
    sent, broke, got = 0, None, b""
    block = chunk * 64
    deadline = time.monotonic() + 20
    while sent < (80 << 20) and time.monotonic() < deadline:
        try:
            s.sendall(block)
        except OSError as e:
            broke = type(e).__name__
            break
        sent += len(block)
    try:
        got = s.recv(65536)
    except OSError:
        pass
    s.close()
    ok(broke is not None and sent < (16 << 20) and b"HTTP/1.1 200" not in got,
       "an endless chunked body: the connection breaks (%s) after %d KiB sent, with no 200" % (broke, sent >> 10))
    ok(health(port), "  and /health still answers 200 after it")

    def logged():  # the log has a writer thread of its own: poll it
        with open(log) as f:
            return "passed the limit by more than 65536 bytes; closing the connection" in f.read()
    ok(poll(logged, 5, 0.05), "the close is logged with the budget")
    ok(stop_microd(proc, log) == 0, "microd --max-body 4k stops cleanly")


def main():
    proc, port, log = start_microd([BIN, "--bind", "127.0.0.1", "--port", "0", "--threads", "2",
                                    "--idle-timeout", "2"])
    if not ok(port is not None, "microd starts"):
        proc.kill()
        return done()

    for name, data, want, by, reason in CASES:
        st, head, body, closed, got = exchange(port, data, raw=True)
        heads = len(re.findall(rb"(?:^|\r\n)HTTP/1\.[01] \d{3} ", got))

        if want == "closed":
            good = closed and st in (None, 400)
            what = "closed" + (" after %s" % st if st else "")
        else:
            good = st == want and (closed or name in KEEPS_OPEN or name in JSON_ERRORS)
            if by == "microd":
                detail = detail_of(body, want)
                good = good and heads == 1 and detail is not None and (detail == reason or name in JSON_ERRORS
                                                                       and reason in detail)
                what = "%s %r%s" % (st, detail, ", closed" if closed else "")
            else:
                # The library's own page; where 0.9.75 sends its status
                # head twice, that is pinned too (microd.8's BUGS names it).
                good = good and reason in body.decode("latin-1") and heads == (2 if name in MHD_HEAD_TWICE else 1)
                what = "%s %r%s, %d status heads" % (st, body[:80], ", closed" if closed else "", heads)
        ok(good, "%s -> %s (want %s %r, refused by %s)" % (name, what, want, reason, by))
        ok(health(port), "  and /health still answers 200 after it")

    for name, data, want in ACCEPTED:
        st, _, body, _ = exchange(port, data)
        ok(st == want, "%s -> %s (accepted)" % (name, st))

    for name, data, reason in SMUGGLING:
        st, _, body, closed, got = exchange(port, data, raw=True)
        answers = re.findall(rb"HTTP/1\.[01] \d{3} ", got)
        ok(st == 400 and detail_of(body, 400) == reason and closed and len(answers) == 1
           and b'"name":"microd"' not in got,
           "smuggling, %s -> one answer, %s %r, closed (%d answers)" % (name, st, detail_of(body, 400), len(answers)))

    # Pinned deviations (microd.8's BUGS): a lone ':'
    # line with bare LF ends leaves the bytes of a normal end of head, so the
    # request after it is served; bare LF inside chunked framing is read.
    st, _, _, _, got = exchange(port, b"GET /health HTTP/1.1\nHost: t\n:\n" + SMUGGLED.replace(b"\r\n", b"\n"),
                                raw=True)
    ok(st == 200 and len(re.findall(rb"HTTP/1\.[01] \d{3} ", got)) == 2,
       "pinned: a lone ':' line with bare LF ends is not seen; the request after it is answered too")
    for tail in (b"\r\n:\n", b"\n:\r\n", b"\r\n\x00\n", b"\n\x00\n"):
        st, _, _, _, got = exchange(port, b"GET /health HTTP/1.1\r\nHost: t" + tail + SMUGGLED, raw=True)
        ok(st == 200 and len(re.findall(rb"HTTP/1\.[01] \d{3} ", got)) == 2,
           "pinned: an early end of head that leaves no more NULs than a real one (%r) is not seen" % tail)
    st, _, body, _ = exchange(port, P + b"Transfer-Encoding: chunked\r\n\r\n2\n{}\n0\n\n")
    ok(st == 200 and body == b"{}\n", "pinned: bare LF inside chunked framing is accepted by the library (%s)" % st)

    # A line whose first byte the library turns into a NUL (a colon, a NUL)
    # ends a trailer section as it ends a head, and microd cannot see where
    # the body ended; so every chunked request is answered with
    # Connection: close and what follows it is never read as a request.
    for what, tail in [("a ': b' line after a trailer", b"X-T: a\r\n: b\r\n"),
                       ("a NUL line as the trailer section", b"\x00\r\n"),
                       ("a NUL-first trailer line", b"\x00X-T: a\r\n"),
                       ("no trailers at all", b"\r\n")]:
        st, head, body, closed, got = exchange(
            port, P + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n" + tail + SMUGGLED, raw=True)
        ok(st == 200 and body.startswith(b"{}\n") and "Connection: close" in head and closed
           and len(re.findall(rb"HTTP/1\.[01] \d{3} ", got)) == 1,
           "chunked, %s: one answer (%s), Connection: close, the request after it never answered" % (what, st))

    # The end of a chunked body split across writes: 0.9.75 files the
    # head's last field again as a trailer; microd ignores that copy.
    for split in ([b"\r", b"\n"], [b"X-", b"T: a\r\n\r\n"]):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(5)
        s.sendall(P + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n" + split[0])
        time.sleep(0.05)  # shapes the traffic into two segments; not a synchronisation
        s.sendall(split[1])
        got = recv_all(s)
        s.close()
        ok(got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"\r\n\r\n{}\n"),
           "a chunked body whose last line is split (%r | %r) is served: %r" % (split[0], split[1], got[:40]))

    # A body shorter than its Content-Length, then the client goes away.
    st, _, _, closed = exchange(port, None, timeout=2,
                                chunks=[P + b"Content-Length: 100\r\n\r\n{\"a\":"])
    ok(st is None, "a body cut short gets no answer (the client is gone)")
    ok(health(port), "  and /health still answers 200 after it")

    # Request heads around the 10 KiB connection pool (the default). libmicrohttpd 0.9.75
    # answers a head far beyond the pool with a clean 431, but in a band
    # just above what fits it either closes without any answer ("Closing
    # connection (failed to create response header)") or sends its 431
    # head twice, the second one where the body should be. Nothing outside
    # the library can reach that path (the handler never runs), so this pins
    # it: if a later libmicrohttpd fixes it, this fails and microd.8's
    # BUGS ("A large Cookie header") must be updated.
    seen = {}
    for n in range(3000, 16001, 250):
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
    bands, start = [], 3000
    for n in sorted(seen):
        if seen[n] != seen[start]:
            bands.append("%d-%d: %s" % (start, n - 250, seen[start]))
            start = n
    bands.append("%d-%d: %s" % (start, max(seen), seen[start]))
    print("# cookie bytes -> outcome: " + "; ".join(bands))
    ok(all(k == "200" for n, k in seen.items() if n <= 4000), "heads up to a 4,000-byte cookie are served")
    ok(all(not k.startswith("other") for k in seen.values()),
       "every oversized head ends within 5 s: 431 or closed, never a hang or another status")
    ok(all(k == "431" for n, k in seen.items() if n >= 12000), "heads beyond the pool get one clean 431")
    ok("closed, no answer" in seen.values() and "431 head sent twice" in seen.values(),
       "pinned libmicrohttpd 0.9.75 defect: just above the pool, no answer or a doubled 431 head")
    ok(health(port), "  and /health still answers 200 after all of them")
    st, _, body, _ = exchange(port, G + b"X-Big: " + b"a" * 9000 + b"\r\nConnection: close\r\n\r\n")
    ok(st == 200 and body == b'{"status":"ok"}\n', "a 9,000-byte header that is not a Cookie is served (%s)" % st)

    with open(log) as f:
        text = f.read()
    lines = [json.loads(l) for l in text.splitlines() if l.startswith("{")]
    ok(any(l.get("msg") == "request" and l.get("path") == "/metrics%00.css" and l.get("status") == 400
           for l in lines), "the access log shows the raw target of a refused %00 path: /metrics%00.css")
    raw = [l for l in text.splitlines() if "\x01" in l]
    ok(any(l.get("msg") == "request" and l.get("path") == "/hea\x01lth" and l.get("status") == 400 for l in lines)
       and not raw and '"path":"/hea\\u0001lth"' in text,
       "a raw control byte in the target is logged escaped (\\u0001), never as the byte %r" % raw[:1])
    status = stop_microd(proc, log)
    chunked_over_limit()
    cookie_memory()
    ok(status == 0, "microd stops cleanly after all of it (exit %s)" % status)
    ok("AddressSanitizer" not in text and "runtime error" not in text, "no sanitizer report in the log")
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
