#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# techempower.py -- the TechEmpower test types (src/app/world.c) against a
# real PostgreSQL 15 (pg.py) with --migrate: /json and /plaintext byte for
# byte, /db, /queries and /updates read back from the World table, the
# ?queries= clamping, Server, Date and Content-Length on every reply, the
# Date moving with the clock, and the exact number of SELECTs per request
# (pg_stat_statements), also under 64 concurrent clients (TAP)
#
# Every wait polls with a deadline.
import email.utils
import json
import os
import re
import socket
import threading
import time

from pg import Cluster
from server import BIN, parse_response, poll, recv_all, start_microd, stop_microd
from tap import done, ok

WORLD_GET = "SELECT id, randomnumber FROM world WHERE id = $1"
CLIENTS = 64


def env_without_db():
    return {k: v for k, v in os.environ.items()
            if not k.startswith("MICROD_") and k not in ("DATABASE_URL", "PORT")}


def microd(*extra):
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--log-format", "text"]
                                   + list(extra), env_without_db())
    if port is not None:
        poll(lambda: request(port, "/readyz")[0] == 200, 10, 0.02)
    return proc, port, log


def request(port, path, method="GET", timeout=30):
    """One request on a new connection: (status or None, {lower-case name:
    value}, body bytes)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.sendall(("%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % (method, path)).encode())
        got = recv_all(s)
        s.close()
    except OSError:
        return None, {}, b""
    return parse_response(got)


def detail(body):
    try:
        return json.loads(body).get("detail")
    except ValueError:
        return None


def framed(h, b):
    """Content-Length is there and is the body's length."""
    return h.get("content-length") == str(len(b))


def date_ok(h):
    """Date is an IMF-fixdate within a second of our clock."""
    d = h.get("date", "")
    if not re.fullmatch(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", d):
        return False
    return abs(email.utils.parsedate_to_datetime(d).timestamp() - time.time()) <= 1.5


def te_headers(h, b):
    return h.get("server") == "microd" and date_ok(h) and framed(h, b)


def table(pg):
    """The World table as {id: randomnumber}."""
    rows = pg.psql("select id, randomnumber from world").split()
    return {int(a): int(b) for a, b in (r.split("|") for r in rows)}


def reset(pg):
    pg.psql("select pg_stat_statements_reset()")


def calls(pg, sql):
    """How many times sql ran since the last reset (pg_stat_statements)."""
    n = pg.psql("select coalesce(sum(calls), 0) from pg_stat_statements where query = '%s'"
                % sql.replace("'", "''")).strip()
    return int(n)


def is_row(r):
    return (isinstance(r, dict) and sorted(r) == ["id", "randomNumber"]
            and all(isinstance(r[k], int) and 1 <= r[k] <= 10000 for k in r))


def test_without_database():
    proc, port, log = microd("--example-routes")
    if not ok(port is not None, "microd --example-routes, no --database"):
        print(open(log).read())
        return
    st, h, b = request(port, "/json")
    ok(st == 200 and b == b'{"message":"Hello, World!"}\n' and te_headers(h, b),
       "GET /json needs no database: 200 with Server, Date, Content-Length (%s %s)" % (st, h))
    for path in ("/db", "/queries?queries=5", "/updates?queries=5"):
        st, h, b = request(port, path)
        ok(st == 503 and detail(b) == "no database is configured" and te_headers(h, b),
           "GET %s without --database: 503, no database is configured, Server, Date, Content-Length (%s %r)"
           % (path, st, b))
    st, h, b = request(port, "/health")
    ok(st == 200 and "server" not in h and "date" in h and framed(h, b),
       "GET /health: Date and Content-Length but no Server (%s)" % h)
    st, h, b = request(port, "/notes/1")
    ok(st == 503 and "server" not in h, "a /notes reply carries no Server either")
    stop_microd(proc, log)
    proc, port, log = microd()
    for path in ("/json", "/plaintext", "/db"):
        st, h, b = request(port, path)
        ok(st == 404, "without --example-routes GET %s is 404 (%s)" % (path, st))
    stop_microd(proc, log)


def test_json_plaintext(port):
    st, h, b = request(port, "/json")
    ok(st == 200 and b == b'{"message":"Hello, World!"}\n' and h.get("content-type") == "application/json",
       "GET /json: 200, {\"message\":\"Hello, World!\"} as application/json (%r %s)" % (b, h))
    ok(te_headers(h, b), "  Server: microd, a current Date, Content-Length %s" % h.get("content-length"))
    st, h, b = request(port, "/plaintext")
    ok(st == 200 and b == b"Hello, World!" and h.get("content-type") == "text/plain",
       "GET /plaintext: 200, Hello, World! as text/plain (%r %s)" % (b, h))
    ok(te_headers(h, b), "  Server: microd, a current Date, Content-Length 13")
    st, h, b = request(port, "/json", "HEAD")
    ok(st == 200 and b == b"" and h.get("server") == "microd" and h.get("content-length") == "28"
       and date_ok(h), "HEAD /json: 200, no body, Server, Date, Content-Length 28 (%s)" % h)


def test_date_moves(port):
    st, h, b = request(port, "/json")
    first = h.get("date")
    later = poll(lambda: (lambda d: d if d and d != first else None)(request(port, "/json")[1].get("date")),
                 3, 0.05)
    ok(first and later and email.utils.parsedate_to_datetime(later) > email.utils.parsedate_to_datetime(first),
       "the Date of /json moves with the clock: %s, then %s" % (first, later))
    st, h, b = request(port, "/db")
    ok(date_ok(h), "/db's Date is current: %s" % h.get("date"))


def test_db(pg, port):
    reset(pg)
    st, h, b = request(port, "/db")
    row = json.loads(b) if st == 200 else None
    ok(st == 200 and is_row(row) and h.get("content-type") == "application/json" and te_headers(h, b),
       "GET /db: 200, one {id, randomNumber} object, Server, Date, Content-Length (%r)" % b)
    t = table(pg)
    ok(row and t.get(row["id"]) == row["randomNumber"], "  the row as the table has it")
    ok(calls(pg, WORLD_GET) == 1, "  one SELECT (pg_stat_statements): %d" % calls(pg, WORLD_GET))
    for path in ("/plaintext", "/db", "/queries?queries=3"):
        st, h, b = request(port, path, "HEAD")
        ok(st == 200 and b == b"" and h.get("server") == "microd" and date_ok(h) and "content-length" in h,
           "HEAD %s: 200, no body, Server, Date, Content-Length (%s)" % (path, h.get("content-length")))


def test_queries(pg, port):
    cases = [("?queries=20", 20), ("?queries=1", 1), ("?queries=0", 1), ("?queries=501", 500),
             ("?queries=500", 500), ("?queries=foo", 1), ("?queries=", 1), ("", 1),
             ("?queries=-3", 1), ("?queries=7x", 1), ("?queries=99999999999999999999999", 500)]
    t = table(pg)
    for query, n in cases:
        reset(pg)
        st, h, b = request(port, "/queries" + query)
        rows = json.loads(b) if st == 200 else None
        got = calls(pg, WORLD_GET)
        ok(st == 200 and isinstance(rows, list) and len(rows) == n and all(map(is_row, rows))
           and te_headers(h, b),
           "GET /queries%s: an array of %d rows, Server, Date, Content-Length (%s, %s rows)"
           % (query, n, st, len(rows) if rows else None))
        ok(rows is not None and all(t[r["id"]] == r["randomNumber"] for r in rows),
           "  each row as the table has it")
        ok(got == n, "  exactly %d SELECTs (pg_stat_statements): %d" % (n, got))
    reset(pg)
    ids = set()
    for _ in range(5):
        st, h, b = request(port, "/queries?queries=20")
        ids |= {r["id"] for r in json.loads(b)} if st == 200 else set()
    ok(len(ids) > 60, "the ids are random: %d different in 5 x 20" % len(ids))


def test_updates(pg, port):
    for query, n in (("?queries=20", 20), ("?queries=0", 1), ("?queries=foo", 1), ("", 1),
                     ("?queries=", 1), ("?queries=501", 500)):
        before = table(pg)
        reset(pg)
        st, h, b = request(port, "/updates" + query)
        rows = json.loads(b) if st == 200 else None
        after = table(pg)
        gets, updates = calls(pg, WORLD_GET), calls(pg, "UPDATE world SET randomnumber = v.r FROM "
                                                    "unnest($1::text::int[], $2::text::int[]) AS v(id, r) "
                                                    "WHERE world.id = v.id")
        ok(st == 200 and isinstance(rows, list) and len(rows) == n and all(map(is_row, rows))
           and te_headers(h, b),
           "GET /updates%s: an array of %d rows, Server, Date, Content-Length (%s)" % (query, n, st))
        rows = rows or []
        ids = {r["id"] for r in rows}
        ok(rows and all(after[r["id"]] == r["randomNumber"] for r in rows),
           "  each row returned as the table now has it (%d distinct ids)" % len(ids))
        changed = {i for i in after if after[i] != before[i]}
        ok(rows and changed <= ids and len(changed) >= len(ids) - 2,
           "  the rows really changed: %d of %d, no other row" % (len(changed), len(ids)))
        ok(gets == n and updates == 1, "  exactly %d SELECTs and one UPDATE: %d, %d" % (n, gets, updates))
        if n == 500:
            dup = len(rows) - len(ids)
            ok(dup > 0 and all(r["randomNumber"] == after[r["id"]] for r in rows),
               "  an id drawn twice (%d repeats) shows its one new number each time" % dup)


def test_concurrent(pg, port):
    """CLIENTS clients at once, a mix of /queries and /updates: all 200, and
    exactly as many SELECTs as the rows they asked for."""
    reset(pg)
    want = []
    statuses = []
    lock = threading.Lock()

    def client(i):
        n = 1 + i % 20
        path = ("/updates?queries=%d" if i % 4 == 0 else "/queries?queries=%d") % n
        for _ in range(3):
            st, h, b = request(port, path)
            ok_rows = st == 200 and len(json.loads(b)) == n
            with lock:
                want.append(n)
                statuses.append(st if ok_rows else (st, b[:80]))

    ts = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    bad = [s for s in statuses if s != 200]
    ok(len(statuses) == 3 * CLIENTS and not bad,
       "%d clients at once, 3 requests each: all 200 with their rows (%s)" % (CLIENTS, bad[:3]))
    got = calls(pg, WORLD_GET)
    ok(got == sum(want), "  exactly %d SELECTs for the %d rows asked (pg_stat_statements): %d"
       % (sum(want), sum(want), got))


def vxids_of_one_request(pg, port, path):
    """The virtual transaction ids (log_line_prefix %v) of the world_get
    executions that one GET of path logs: one per transaction."""
    offset = os.path.getsize(pg.log)
    st, h, b = request(port, path)

    def lines():
        with open(pg.log, errors="replace") as f:
            f.seek(offset)
            return [l for l in f.read().splitlines() if "execute world_get" in l]
    n = int(path.rsplit("=", 1)[1])
    poll(lambda: len(lines()) >= n, 5, 0.02)
    return st, [l.split(" ", 1)[0] for l in lines()]


def test_one_round_trip(pg):
    """A request's statements go out together, one transaction (one Sync):
    the 20 world_get of one /queries?queries=20 share one virtual
    transaction id in the server's log; with --database-pipeline off each
    is a transaction of its own."""
    pg.psql("ALTER SYSTEM SET log_statement = 'all'")
    pg.psql("ALTER SYSTEM SET log_line_prefix = 'vxid=%v '")
    pg.psql("SELECT pg_reload_conf()")
    for mode, want in (("on", 1), ("off", 20)):
        proc, port, log = microd("--example-routes", "--database", pg.uri, "--database-pipeline", mode)
        if not ok(port is not None, "microd --database-pipeline %s" % mode):
            continue
        st, vx = vxids_of_one_request(pg, port, "/queries?queries=20")
        ok(st == 200 and len(vx) == 20 and len(set(vx)) == want,
           "  --database-pipeline %s: the 20 SELECTs of one request in %d transaction(s): %d logged, %d "
           "transactions" % (mode, want, len(vx), len(set(vx))))
        stop_microd(proc, log)
    pg.psql("ALTER SYSTEM RESET log_statement")
    pg.psql("ALTER SYSTEM RESET log_line_prefix")
    pg.psql("SELECT pg_reload_conf()")


def main():
    test_without_database()
    with Cluster() as pg:
        proc, port, log = microd("--example-routes", "--database", pg.uri, "--migrate")
        if not ok(port is not None, "microd --example-routes --database --migrate"):
            print(open(log).read())
            return done()
        n = pg.psql("select count(*), min(id), max(id), min(randomnumber) >= 1 and "
                    "max(randomnumber) <= 10000 from world").strip()
        ok(n == "10000|1|10000|t", "the migration seeds world: 10,000 rows, numbers 1-10,000 (%s)" % n)
        test_json_plaintext(port)
        test_date_moves(port)
        test_db(pg, port)
        test_queries(pg, port)
        test_updates(pg, port)
        test_concurrent(pg, port)
        ok(stop_microd(proc, log) == 0, "exit status 0")
        test_one_round_trip(pg)
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
