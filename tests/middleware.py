#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# middleware.py -- the before-handler chain over the wire: bearer tokens
# (RFC 6750 answers, a reload on SIGHUP, never a token in the log) and the
# per-client rate limit (429 for the client over it, nothing for the others,
# X-Forwarded-For only from a trusted proxy, a table of fixed size) (TAP)
#
# Two source addresses on loopback, 127.0.0.1 and 127.0.0.2, are two clients.
# Every wait polls with a deadline.
import json
import os
import re
import socket
import subprocess
import tempfile

from server import BIN, poll, recv_all, start_microd, stop_microd, wait_exit
from tap import done, ok

TOKENS = ["s3cret-token-one", "Zm9vYmFy+/~._-==", "tok3n-Three-of-them"]
QUOTA = "https://iana.org/assignments/http-problem-types#quota-exceeded"
MHD_TOO_BIG = "Your HTTP header was too big"


def parse(data):
    """(status, {lower-case name: [values]}, body bytes) of one answer."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.1 (\d{3}) ", lines[0]) if lines else None
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    return (int(m.group(1)) if m else None), fields, body


def ask(port, path="/version", headers=(), source="127.0.0.1", method="GET", body=b""):
    """One request on its own connection from source: parse()'s triple,
    or (None, {}, b"") when nothing came."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
        req = "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" % (method, path)
        req += "".join("%s: %s\r\n" % h for h in headers)
        if body:
            req += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        s.sendall(req.encode() + b"\r\n" + body)
        data = recv_all(s)
        s.close()
    except OSError:
        return None, {}, b""
    return parse(data)


def problem(body):
    try:
        return json.loads(body)
    except ValueError:
        return {}


def bearer(tok):
    return ("Authorization", "Bearer " + tok)


# The two 401s of RFC 6750 3.1: (WWW-Authenticate, problem detail).
NO_TOKEN = ('Bearer realm="microd"', "a bearer token is required")
BAD_TOKEN = ('Bearer realm="microd", error="invalid_token"', "the bearer token is not valid")


def refused(answer, want):
    """Whether ask()'s answer is the 401 of want (NO_TOKEN or BAD_TOKEN),
    its challenge and detail exact: a 401 from another rule is not."""
    st, f, body = answer
    return st == 401 and f.get("www-authenticate") == [want[0]] and problem(body).get("detail") == want[1]


def seen(answer):
    """What a refusal check saw, for its message."""
    st, f, body = answer
    return "%s %s %r" % (st, f.get("www-authenticate"), problem(body).get("detail"))


def metric(port, name, headers=(), source="127.0.0.3"):
    """A metric's value, scraped from a client of its own (127.0.0.3)."""
    st, _, body = ask(port, "/metrics", headers, source=source)
    m = re.search(r"^%s (\d+)$" % re.escape(name), body.decode(), re.M)
    return int(m.group(1)) if st == 200 and m else None


def token_file(lines):
    f = tempfile.NamedTemporaryFile("w", prefix="microd-tokens-", delete=False)
    f.write(lines)
    f.close()
    return f.name


def test_auth():
    path = token_file("# the service's callers\n\n%s\n  %s  \r\n%s" % tuple(TOKENS))
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--auth-token-file", path,
                                    "--log-format", "json"])
    if not ok(port is not None, "microd with --auth-token-file"):
        return
    st, f, body = ask(port)
    p = problem(body)
    ok(st == 401 and f.get("www-authenticate") == ['Bearer realm="microd"'] and
       p.get("detail") == "a bearer token is required" and
       f.get("content-type") == ["application/problem+json"],
       "no Authorization: 401 with a bare challenge, WWW-Authenticate: Bearer realm=\"microd\" (%s %s %s)"
       % (st, f.get("www-authenticate"), p.get("detail")))
    for i, tok in enumerate(TOKENS):
        st, _, body = ask(port, headers=[bearer(tok)])
        ok(st == 200 and b'"version"' in body, "token %d of the file (blank lines, a comment, spaces and a CR "
           "around them skipped): 200 /version" % (i + 1))
    st, _, _ = ask(port, headers=[("Authorization", "bearer   %s  " % TOKENS[0])])
    ok(st == 200, "the scheme in any case, spaces around the token: 200")
    st, f, body = ask(port, headers=[bearer("s3cret-token-onf")])
    p = problem(body)
    ok(st == 401 and f.get("www-authenticate") == ['Bearer realm="microd", error="invalid_token"'] and
       p.get("detail") == "the bearer token is not valid",
       "a wrong token: 401 with error=\"invalid_token\" (%s %s)" % (st, f.get("www-authenticate")))
    a = ask(port, headers=[bearer(TOKENS[0] + "x")])
    ok(refused(a, BAD_TOKEN), "a token with a byte more: 401 invalid_token (%s)" % seen(a))
    a = ask(port, headers=[bearer(TOKENS[0][:-1])])
    ok(refused(a, BAD_TOKEN), "a token with a byte less: 401 invalid_token (%s)" % seen(a))
    a = ask(port, headers=[("Authorization", "Basic dXNlcjpwYXNz")])
    ok(refused(a, NO_TOKEN),
       "another scheme (Basic) is no credentials of ours: 401 with the bare challenge (%s)" % seen(a))
    for value, why in (("Bearer", "no token"), ("Bearer two tokens", "a space inside"),
                       ("Bearer tok,en", "a comma")):
        st, f, body = ask(port, headers=[("Authorization", value)])
        p = problem(body)
        ok(st == 400 and f.get("www-authenticate") == ['Bearer realm="microd", error="invalid_request"'] and
           p.get("detail", "").startswith("Authorization: not \"Bearer\" and one token"),
           "Authorization %r (%s): 400 with error=\"invalid_request\" (%s %s)" % (value, why, st, p.get("detail")))
    for probe in ("/health", "/ready", "/livez", "/readyz", "/livez/pool", "/readyz/drain"):
        st, _, _ = ask(port, probe)
        ok(st == 200, "the probe %s needs no token: 200" % probe)
    for probe in ("/livez/no-such-check", "/readyz/no-such-check", "/livez/drain", "/readyz/pool"):
        a = ask(port, probe)
        ok(refused(a, NO_TOKEN), "%s names no check of its group: no probe, so 401 without a token, as a "
           "path no route serves (%s)" % (probe, seen(a)))
    st, _, body = ask(port, "/readyz/no-such-check", [bearer(TOKENS[0])])
    ok(st == 404 and problem(body).get("detail") == "no check named no-such-check in readiness",
       "  with a token: the probe's own 404 (%s %r)" % (st, problem(body).get("detail")))
    st, _, _ = ask(port, "/metrics")
    ok(st == 200, "/metrics needs no token without --auth-metrics")
    a = ask(port, "/nope")
    ok(refused(a, NO_TOKEN),
       "a path no route serves is 401 too, the bare challenge: without a token no one learns which paths "
       "exist (%s)" % seen(a))
    st, _, _ = ask(port, "/nope", [bearer(TOKENS[0])])
    ok(st == 404, "  with one it is 404")
    st, f, body = ask(port, headers=[("Authorization", "Bearer s3cret-token-onf"), bearer(TOKENS[0])])
    ok(st == 400 and problem(body).get("detail") == "Authorization: more than one" and
       f.get("www-authenticate") == ['Bearer realm="microd", error="invalid_request"'],
       "two Authorization lines, a good one among them: 400 invalid_request (%s)" % st)
    # A refused request with a body is answered before the body is read,
    # and its connection closed; one without keeps its connection.
    a = ask(port, "/echo", method="POST", body=b'{"a":1}')
    ok(refused(a, NO_TOKEN) and a[1].get("connection") == ["close"],
       "POST /echo without a token: 401 with the bare challenge, and the connection closed (%s)" % seen(a))
    st, _, body = ask(port, "/echo", [bearer(TOKENS[2])], method="POST", body=b'{"a":1}')
    ok(st == 200 and json.loads(body) == {"a": 1}, "  with a token: the echo")
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /version HTTP/1.1\r\nHost: t\r\n\r\n"
              b"GET /version HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer tok3n-Three-of-them\r\nConnection: close\r\n\r\n")
    both = recv_all(s)
    s.close()
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", both)
    first = parse(both[:both.find(b"HTTP/1.1 ", 1)]) if len(statuses) == 2 else (None, {}, b"")
    ok(statuses == [b"401", b"200"] and refused(first, NO_TOKEN),
       "a 401 (the bare challenge) keeps the connection: the next request on it is served (%s; %s)"
       % (statuses, seen(first)))
    big = "Bearer " + "a" * (100 * 1024)
    st, _, body = ask(port, headers=[("Authorization", big)])
    ok(st == 431 and MHD_TOO_BIG.encode() in body,
       "a 100 KiB Authorization: 431 from the header limits (libmicrohttpd's own answer), never parsed")
    total = metric(port, 'microd_auth_refused_total{error="invalid_token"}')
    ok(total == 3, "microd_auth_refused_total{error=\"invalid_token\"} counts the wrong tokens: %s" % total)
    ok(metric(port, 'microd_auth_refused_total{error="invalid_request"}') == 4 and
       metric(port, 'microd_auth_refused_total{error="none"}') == 9 and metric(port, "microd_auth_tokens") == 3,
       "  error=\"invalid_request\" the malformed ones, error=\"none\" the missing ones; microd_auth_tokens 3")

    # SIGHUP: the file read again; a file that does not parse keeps the old.
    with open(path, "w") as f:
        f.write("new-token-0123456789\n")
    proc.send_signal(1)
    ok(poll(lambda: ask(port, headers=[bearer("new-token-0123456789")])[0] == 200, 5, 0.05),
       "SIGHUP reads the file again: its new token is taken")
    a = ask(port, headers=[bearer(TOKENS[0])])
    ok(refused(a, BAD_TOKEN), "  and a token no longer in it refused: 401 invalid_token (%s)" % seen(a))
    with open(path, "w") as f:
        f.write("new-token-0123456789\nbad token with spaces\n")
    proc.send_signal(1)
    ok(poll(lambda: metric(port, 'microd_auth_reloads_total{result="failed"}') == 1, 5, 0.05),
       "a file with a bad line: the reload fails (microd_auth_reloads_total{result=\"failed\"} 1)")
    st, _, _ = ask(port, headers=[bearer("new-token-0123456789")])
    ok(st == 200 and metric(port, 'microd_auth_reloads_total{result="ok"}') == 1,
       "  and the tokens there were are kept")
    text = open(log).read()
    ok("tokens not reloaded" in text and "line 2: not a bearer token" in text,
       "  the log says which line is bad")
    with open(path, "w") as f:
        f.write("# every token revoked\n")
    proc.send_signal(1)
    ok(poll(lambda: metric(port, "microd_auth_tokens") == 0, 5, 0.05) and
       refused(ask(port, headers=[bearer("new-token-0123456789")]), BAD_TOKEN) and ask(port, "/health")[0] == 200,
       "a reload of a file with no token revokes them all: 401 invalid_token for every token, the probes "
       "still 200")
    text = open(log).read()
    leaked = [t for t in TOKENS + ["new-token", "s3cret-token-onf", "bad token"] if t in text]
    ok(not leaked, "no token, right or wrong, is ever in the log: %s" % leaked)
    stop_microd(proc, log)

    with open(path, "w") as f:
        f.write("metrics-token-0123456789\n")
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--auth-token-file", path,
                                    "--auth-metrics"])
    st, _, body = ask(port, "/metrics", [bearer("metrics-token-0123456789")])
    ok(st == 200 and b"microd_auth_tokens 1" in body, "--auth-metrics: /metrics with a token: 200")
    a = ask(port, "/metrics")
    ok(refused(a, NO_TOKEN), "  without one: 401 with the bare challenge (%s)" % seen(a))
    st, _, _ = ask(port, "/health")
    ok(st == 200, "  the probes stay open")
    stop_microd(proc, log)

    with open(path, "w") as f:
        f.write("fine-0123456789abcdef\nthe-secret-part is bad\n")
    # --check-config reads the file as a start does, and exits 0 at once
    # when it reads: a test of a refusal cannot hang on a server.
    r = subprocess.run([BIN, "--check-config", "--auth-token-file", path], capture_output=True, text=True,
                       timeout=10)
    ok(r.returncode == 2 and "line 2: not a bearer token" in r.stderr and "secret" not in r.stderr,
       "a token file with a bad line fails the start with status 2, naming the line, not the token: %r"
       % r.stderr.strip())
    r = subprocess.run([BIN, "--check-config", "--auth-token-file", path + ".missing"], capture_output=True,
                       text=True, timeout=10)
    ok(r.returncode == 2 and "cannot read" in r.stderr, "a token file that does not exist: status 2 (%r)"
       % r.stderr.strip())
    with open(path, "w") as f:
        f.write("# nothing but a comment\n")
    r = subprocess.run([BIN, "--check-config", "--auth-token-file", path], capture_output=True, text=True,
                       timeout=10)
    ok(r.returncode == 2 and "no token in it" in r.stderr, "a file with no token at start: status 2")
    for content, why in (("long-enough-token-one\nlong-enough-token-two\n".encode("utf-16-le"), "UTF-16"),
                         (b"long-enough-token-one\0long-enough-token-two\n", "a NUL byte"),
                         (b"tooshort-15char\n", "a token of 15 bytes")):
        with open(path, "wb") as f:
            f.write(content)
        r = subprocess.run([BIN, "--check-config", "--auth-token-file", path], capture_output=True, text=True,
                           timeout=10)
        ok(r.returncode == 2 and "line 1: not a bearer token" in r.stderr,
           "a token file with %s: status 2, line 1 named (%r)" % (why, r.stderr.strip()))
    os.unlink(path)


def limited(port, source, path="/version", headers=()):
    return ask(port, path, headers, source=source)


def test_rate_limit():
    # One request a 1000 s: nothing refills while the test runs, however
    # slow the build.
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--rate-limit", "0.001",
                                    "--rate-burst", "3"])
    if not ok(port is not None, "microd with --rate-limit 0.001 --rate-burst 3"):
        return
    seen = [limited(port, "127.0.0.1") for _ in range(3)]
    ok([s[0] for s in seen] == [200, 200, 200], "a burst of 3 from 127.0.0.1: 200s")
    ok([s[1].get("ratelimit") for s in seen] ==
       [['"per-client";r=2;t=1000'], ['"per-client";r=1;t=2000'], ['"per-client";r=0;t=3000']] and
       all(s[1].get("ratelimit-policy") == ['"per-client";q=3;w=3000'] for s in seen),
       "  each with RateLimit-Policy q=3;w=3000 and RateLimit counting down: %s"
       % [s[1].get("ratelimit") for s in seen])
    st, f, body = limited(port, "127.0.0.1")
    p = problem(body)
    ok(st == 429 and p.get("type") == QUOTA and p.get("violated-policies") == ["per-client"] and
       f.get("retry-after") == ["1000"] and f.get("ratelimit") == ['"per-client";r=0;t=1000'] and
       p.get("detail", "").startswith("rate limit: 3 requests at once"),
       "the 4th: 429 problem details of type quota-exceeded, Retry-After 1000, RateLimit's t the same "
       "(%s %s %s)"
       % (st, p.get("type"), f.get("retry-after")))
    st, f, _ = limited(port, "127.0.0.2")
    ok(st == 200 and f.get("ratelimit") == ['"per-client";r=2;t=1000'],
       "127.0.0.2 is another client: 200, its own full bucket")
    flood = [limited(port, "127.0.0.1")[0] for _ in range(50)]
    ok(flood == [429] * 50, "a flood of 50 from 127.0.0.1: all 429 (%s)" % sorted(set(flood), key=str))
    others = [limited(port, "127.0.0.2")[0] for _ in range(2)]
    ok(others == [200, 200], "  while 127.0.0.2 goes on as before: %s" % others)
    probes = [limited(port, "127.0.0.1", p) for p in ("/health", "/ready", "/livez", "/readyz")]
    ok([p[0] for p in probes] == [200] * 4 and all("ratelimit" not in p[1] for p in probes),
       "the probes from the limited client: 200, and no RateLimit fields")
    st, _, _ = limited(port, "127.0.0.1", "/nope")
    ok(st == 429, "a path no route serves is limited too: a flood of 404s gets 429s")
    named = [limited(port, "127.0.0.1", p)[0] for p in ("/livez/pool", "/readyz/drain", "/readyz/no-such-check",
                                                        "/livez/no-such-check")]
    ok(named == [200, 200, 429, 429],
       "a check's own probe from the limited client is exempt, a name that is no check's is limited: %s" % named)
    n = metric(port, "microd_rate_limited_total")
    ok(n == 54, "microd_rate_limited_total counts every 429: %s (54 sent)" % n)
    other = [limited(port, "127.0.0.1", p)[0] for p in ("/livez/drain", "/readyz/pool")]
    ok(other == [429, 429], "a check's name under the other group's path is no probe either: %s" % other)
    stop_microd(proc, log)

    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--rate-limit", "1"])
    first, second = limited(port, "127.0.0.1"), limited(port, "127.0.0.1")
    ok(first[0] == 200 and second[0] == 429 and second[1].get("retry-after") == ["1"],
       "--rate-limit 1 (burst: the rate, 1): a second request at once is 429 with Retry-After 1")
    ok(poll(lambda: limited(port, "127.0.0.1")[0] == 200, 5, 0.1),
       "  and once the bucket has refilled the client is served again")
    stop_microd(proc, log)


def test_forwarded():
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--rate-limit", "0.001",
                                    "--rate-burst", "1", "--trusted-proxy", "127.0.0.1",
                                    "--trusted-proxy", "10.0.0.0/8"])
    if not ok(port is not None, "microd with --trusted-proxy 127.0.0.1 and 10.0.0.0/8, burst 1"):
        return

    def via(xff, source="127.0.0.1"):
        return limited(port, source, headers=[("X-Forwarded-For", v) for v in xff])[0]

    ok(via(["203.0.113.5"]) == 200 and via(["203.0.113.5"]) == 429,
       "through the trusted proxy, the client is X-Forwarded-For's address: its second request 429")
    ok(via(["203.0.113.6"]) == 200, "  another address behind the proxy: its own bucket")
    ok(via(["198.51.100.1, 203.0.113.5"]) == 429,
       "  the rightmost address counts: a client cannot pick another by sending its own first")
    ok(via(["203.0.113.5, 10.1.2.3"]) == 429 and via(["203.0.113.5", "10.1.2.3"]) == 429,
       "  trusted proxies on the right are skipped, in one line or on two")
    ok(via(["unknown, 203.0.113.7"]) == 200 and via(["203.0.113.7"]) == 429,
       "  garbage left of the client's address is never reached")
    ok(via(["203.0.113.7,", ""]) == 429, "  empty entries (a trailing comma, an empty line) are skipped")
    # A proxy that adds a line of its own puts it last: past 16 lines the
    # first are left out, and a walk that reaches them ends at the proxy.
    spoof = ["198.51.100.%d" % i for i in range(100, 116)]
    ok(via(spoof + ["203.0.113.5"]) == 429,
       "17 lines, the proxy's last: the client is still the proxy's line, not one of the 16 it sent")
    ok(via(["2001:db8::1"]) == 200 and via(["2001:db8::2"]) == 429 and via(["2001:db8:0:1::1"]) == 200,
       "  an IPv6 client is its /64: another address of it is limited, another /64 is not")
    proxies = ["10.0.0.%d" % i for i in range(1, 17)]
    ok(via(["198.51.100.1"] + proxies) == 200 and via(["198.51.100.2"] + proxies) == 429,
       "  16 proxies' lines after the client's: the key is the leftmost kept proxy, never the line the "
       "client wrote")
    ok(via(["203.0.113.9"], source="127.0.0.2") == 200 and via(["203.0.113.9"], source="127.0.0.2") == 429 and
       via(["203.0.113.10"], source="127.0.0.2") == 429,
       "from an untrusted peer (127.0.0.2), X-Forwarded-For is ignored: the peer is the client")
    stop_microd(proc, log)

    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--rate-limit", "0.001",
                                    "--rate-burst", "1", "--trusted-proxy", "127.0.0.1",
                                    "--rate-limit-clients", "8"])
    statuses = [via(["198.51.100.%d" % i]) for i in range(1, 41)]
    evicted = metric(port, 'microd_rate_limit_evictions_total{state="limited"}')
    ok(statuses == [200] * 40 and evicted == 33,
       "--rate-limit-clients 8: 40 clients through a table of 8: 32 evicted while limited, and one more for "
       "the scrape itself (%s); memory fixed" % evicted)
    ok(via(["198.51.100.1"]) == 200, "  an evicted client starts over with a full bucket")
    stop_microd(proc, log)


def test_config_errors():
    for args, want in ((["--trusted-proxy", "10.0.0.1/8"], "--trusted-proxy"),
                       (["--trusted-proxy", "10.0.0.0/33"], "--trusted-proxy"),
                       (["--rate-limit", "fast"], "--rate-limit"),
                       (["--rate-limit", "0.0001"], "--rate-limit"),
                       (["--rate-burst", "0"], "--rate-burst"),
                       (["--rate-limit-clients", "4"], "--rate-limit-clients")):
        r = subprocess.run([BIN, "--check-config"] + args, capture_output=True, text=True, timeout=10)
        ok(r.returncode == 2 and r.stderr.startswith("microd: " + want + ": invalid value"),
           "%s: status 2, the flag named (%r)" % (" ".join(args), r.stderr.strip()))
    env = dict(os.environ, MICROD_TRUSTED_PROXIES="10.0.0.0/8 ::1 fd00::/8", MICROD_RATE_LIMIT="2.5")
    r = subprocess.run([BIN, "--check-config"], capture_output=True, text=True, timeout=10, env=env)
    ok(r.returncode == 0 and "rate limit 2.500 a second and 3 at once per client, 16384 clients, "
       "3 trusted proxy blocks" in r.stdout and "bearer tokens: off" in r.stdout,
       "MICROD_TRUSTED_PROXIES takes several blocks, separated by spaces; --check-config shows the limit "
       "(burst: the rate rounded up)")
    path = token_file("a-token-of-twenty-bytes\n")
    r = subprocess.run([BIN, "--check-config", "--auth-token-file", path], capture_output=True, text=True,
                       timeout=10)
    ok(r.returncode == 0 and ("bearer tokens from %s, on every request but the probes and /metrics" % path)
       in r.stdout and "a-token-of" not in r.stdout, "--check-config names the token file, never a token")
    os.unlink(path)
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--auth-metrics",
                                    "--trusted-proxy", "0.0.0.0/0", "--log-format", "text"])
    text = open(log).read()
    ok("--auth-metrics without --auth-token-file: /metrics is open" in text and
       "--rate-burst or --trusted-proxy without --rate-limit" in text and
       "--trusted-proxy 0.0.0.0/0 trusts every peer" in text,
       "settings that do nothing, or trust everyone, are warned of at start")
    stop_microd(proc, log)
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--rate-limit", "1",
                                    "--trusted-proxy", "2001:db8::/96"])
    text = open(log).read()
    ok(port is not None and "trusts every peer" not in text,
       "  an IPv6 /96 that is not the IPv4 space is no such warning")
    stop_microd(proc, log)


def main():
    test_auth()
    test_rate_limit()
    test_forwarded()
    test_config_errors()
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
