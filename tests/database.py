#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# database.py -- --database wired in, against a real PostgreSQL 15 (pg.py):
# the database check in readiness and never in liveness, down at start and
# stopped while running; the settings, the metrics, and the password kept
# out of every log, error and --check-config (TAP)
#
# Every wait polls with a deadline; the database's own start and stop are
# pg_ctl's, waited for by pg.py.
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from pg import Cluster
from server import BIN, poll, start_microd, stop_microd
from tap import done, ok, skip
from checks import get

INTERVAL, THRESHOLD, TIMEOUT = 0.1, 2, 0.5
DOWN = "no connection: the database cannot be reached (the log has libpq's reason)"
# The database's readiness follows it within this long (issue 26).
SERVES_WITHIN = 2.0


def env_without_db():
    return {k: v for k, v in os.environ.items()
            if not k.startswith("MICROD_") and k not in ("DATABASE_URL", "PORT")}


def verbose_database(port):
    """(status of /readyz?verbose, the database check's object or None)."""
    st, body, _ = get(port, "/readyz?verbose")
    return st, ((body or {}).get("checks") or {}).get("database")


def metrics(port):
    import socket
    from server import recv_all
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    got = recv_all(s)
    s.close()
    return got[got.find(b"\r\n\r\n") + 4:].decode()


def metric(text, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def microd(pg, *extra):
    return start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--log-format", "text",
                         "--database", pg.uri, "--health-details",
                         "--check-interval", str(INTERVAL), "--check-threshold", str(THRESHOLD),
                         "--check-timeout", str(TIMEOUT)] + list(extra), env_without_db())


def test_down_then_up_then_down(pg):
    pg.stop()
    proc, port, log = microd(pg, "--database-pool", "3", "--database-acquire-timeout", "0.3",
                             "--database-timeout", "2")
    if not ok(port is not None, "the database down at start: microd starts all the same"):
        print(open(log).read())
        return
    ok(poll(lambda: verbose_database(port)[1] is not None
            and verbose_database(port)[1].get("output") == DOWN, 3, 0.05),
       "  /readyz?verbose: database fails with %r" % DOWN)
    st, body, _ = get(port, "/readyz")
    ok(st == 503 and body == {"status": "fail"}, "  /readyz: 503 fail (%s %s)" % (st, body))
    st, body, _ = get(port, "/readyz/database")
    ok(st == 503, "  /readyz/database: 503 (%s)" % st)
    st, body, _ = get(port, "/livez?verbose")
    ok(st == 200 and "database" not in (body or {}).get("checks", {}),
       "  /livez: 200, and liveness has no database check (%s %s)" % (st, body))
    text = open(log).read()
    ok("check database: not run -> fail: " + DOWN in text, "  the log: check database: not run -> fail: ...")
    ok(re.search(r"database: user='microd' dbname='microd' host='127\.0\.0\.1' port='%d', 3 connections, "
                 r"acquire timeout 300 ms, statement timeout 2000 ms, pipeline on" % pg.port, text),
       "  the pool's log line names the database without its password, and the flags' settings")
    ok(re.search(r"database: cannot connect: connection to server at \\\"127\.0\.0\.1\\\", port %d failed: "
                 r"Connection refused" % pg.port, text),
       "  the pool's log line has libpq's reason")

    pg.restart()
    t0 = time.monotonic()
    up = poll(lambda: get(port, "/readyz")[0] == 200, SERVES_WITHIN + 1, 0.02)
    took = time.monotonic() - t0
    ok(up and took <= SERVES_WITHIN, "the database up: /readyz 200 within %.1f s (%.2f s)" % (SERVES_WITHIN, took))
    ok(poll(lambda: "check database: fail -> pass" in open(log).read(), 2, 0.05),
       "  the log: check database: fail -> pass")
    m = metrics(port)
    ok(metric(m, 'microd_db_connections{state="idle"}') is not None
       and metric(m, "microd_db_connections_max") == 3, "  metrics: 3 connections at most")
    ok(metric(m, 'microd_check_up{check="database",group="readiness"}') == 1,
       "  metrics: microd_check_up{check=\"database\",group=\"readiness\"} 1")

    # Stopped while running: readiness follows within interval x threshold
    # (plus a run's timeout and a probe's round trip), liveness never.
    pg.stop()
    t0 = time.monotonic()
    failed = poll(lambda: get(port, "/readyz")[0] == 503, 5, 0.01)
    took = time.monotonic() - t0
    bound = INTERVAL * THRESHOLD + TIMEOUT
    m = metrics(port)
    ok(failed and took <= bound, "the database stopped: /readyz 503 within %.1f s (%.2f s)" % (bound, took))
    ok((metric(m, 'microd_check_failures_total{check="database"}') or 0) >= THRESHOLD,
       "  after --check-threshold (%d) failed runs" % THRESHOLD)
    st, check = verbose_database(port)
    ok(check is not None and check.get("output") == DOWN, "  the reason: %r" % (check or {}).get("output"))
    ok(get(port, "/livez")[0] == 200, "  /livez: 200 all the same")
    text = open(log).read()
    ok(re.search(r"check database: pass -> fail: ", text), "  the log: check database: pass -> fail")

    pg.restart()
    t0 = time.monotonic()
    up = poll(lambda: get(port, "/readyz")[0] == 200, SERVES_WITHIN + 1, 0.02)
    took = time.monotonic() - t0
    ok(up and took <= SERVES_WITHIN, "restarted: /readyz 200 within %.1f s (%.2f s)" % (SERVES_WITHIN, took))
    m = metrics(port)
    ok((metric(m, "microd_db_reconnects_total") or 0) >= 1,
       "  microd_db_reconnects_total counts the connections made again (%s)"
       % metric(m, "microd_db_reconnects_total"))
    ok(metric(m, "microd_db_acquire_timeouts_total") == 0,
       "  microd_db_acquire_timeouts_total 0: the check's failed acquires while down are not counted")
    test_hung(pg, port, log)
    text = open(log).read()
    ok(pg.password not in text, "  the password appears nowhere in the log")
    ok(stop_microd(proc, log) == 0, "  SIGTERM: exit 0 with the pool closed")


def server_pids(pg):
    """The postmaster and its children."""
    with open(os.path.join(pg.data, "postmaster.pid")) as f:
        root = int(f.readline())
    pids = [root]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == root:
                        pids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def test_hung(pg, port, log):
    """A database that accepts nothing and answers nothing (every process of
    it stopped): SELECT 1 gets no answer within the check timeout."""
    import signal
    want = "SELECT 1: no answer within %d ms" % (TIMEOUT * 1000)
    ok(poll(lambda: get(port, "/readyz")[0] == 200
            and metric(metrics(port), 'microd_db_connections{state="idle"}') == 3, 5, 0.02),
       "before the hang: /readyz 200, the pool full")
    pids = server_pids(pg)
    seen = []
    try:
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        poll(lambda: seen.append((verbose_database(port)[1] or {}).get("output")) or seen[-1] == want, 5, 0.02)
        ok(seen[-1] == want, "the database hung: the reason %r (seen: %s)"
           % (want, sorted(set(map(str, seen)))))
        ok(get(port, "/livez")[0] == 200, "  /livez: 200 all the same")
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
    ok(poll(lambda: get(port, "/readyz")[0] == 200, 10, 0.02), "  going on again: /readyz 200")


def test_metrics(pg):
    pg.psql("alter system set log_statement = 'all'")
    pg.psql("select pg_reload_conf()")
    proc, port, log = microd(pg, "--database-pool", "2", "--database-timeout", "1.5")
    if not ok(port is not None, "microd with the database up"):
        return
    ok(poll(lambda: get(port, "/readyz")[0] == 200, 5, 0.02), "  /readyz 200")
    ok(poll(lambda: metric(metrics(port), 'microd_db_connections{state="idle"}') == 2, 5, 0.02),
       "  both connections made, idle")
    m = metrics(port)
    want = ['# TYPE microd_db_connections gauge', 'microd_db_connections{state="used"} 0',
            '# TYPE microd_db_acquire_seconds histogram', 'microd_db_acquire_seconds_count 0',
            '# TYPE microd_db_operation_duration_seconds histogram',
            '# TYPE microd_db_errors_total counter',
            '# TYPE microd_db_connections_max gauge', 'microd_db_connections_max 2',
            '# TYPE microd_db_acquire_timeouts_total counter', 'microd_db_acquire_timeouts_total 0',
            '# TYPE microd_db_reconnects_total counter', 'microd_db_reconnects_total 0']
    missing = [w for w in want if w not in m.split("\n")]
    ok(not missing, "  /metrics: the db families, their types and values%s"
       % (" (missing: %s)" % missing if missing else ""))
    ok(re.search(r'^microd_db_operation_duration_seconds_bucket\{statement="[a-z_0-9]+",le="\+Inf"\} 0$',
                 m, re.M), "  microd_db_operation_duration_seconds has a series for each statement of the table")
    n = pg.psql("select count(*) from pg_stat_activity where application_name = 'microd'").strip()
    ok(n == "2", "  pg_stat_activity: --database-pool 2 connections (%s)" % n)
    ok(re.search(r"statement: SET statement_timeout = 1500$", pg.log_text(), re.M),
       "  each connection sets statement_timeout to --database-timeout")
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=m, capture_output=True, text=True)
        ok(r.returncode == 0, "  promtool check metrics accepts the scrape%s"
           % ("" if r.returncode == 0 else ": " + r.stdout + r.stderr))
    else:
        skip("promtool is not installed")
    ok(pg.password not in open(log).read(), "  the password appears nowhere in the log")
    ok(stop_microd(proc, log) == 0, "  SIGTERM: exit 0")

    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1"], env_without_db())
    if not ok(port is not None, "without --database"):
        return
    m = metrics(port)
    st, body, _ = get(port, "/readyz?verbose")
    ok("microd_db_" not in m and set((body or {}).get("checks", {})) == {"drain"},
       "  no db metrics, and readiness is drain alone (%s)" % body)
    ok(stop_microd(proc, log) == 0, "  SIGTERM: exit 0")


def check_config(args, env):
    r = subprocess.run([BIN, "--check-config"] + args, env=env, capture_output=True, text=True, timeout=10)
    line = [x for x in r.stdout.split("\n") if x.startswith("database")]
    return r.returncode, line[0] if line else None, r.stdout + r.stderr


def test_settings(pg):
    env = env_without_db()
    shown = "user='microd' dbname='microd' host='127.0.0.1' port='%d'" % pg.port
    rc, line, out = check_config(["--database", pg.uri, "--handler-threads", "5"], env)
    ok(rc == 0 and line == "database %s: 5 connections, acquire timeout 1000 ms, statement timeout "
       "5000 ms, pipeline on" % shown, "--check-config: the database without its password, the pool as large as "
       "--handler-threads (%r)" % line)
    ok(pg.password not in out, "  the password is not in its output")
    rc, line, out = check_config(["--database", pg.uri, "--database-pool", "7",
                                  "--database-acquire-timeout", "0.25", "--database-timeout", "2"], env)
    ok(rc == 0 and line == "database %s: 7 connections, acquire timeout 250 ms, statement timeout 2000 ms, pipeline on"
       % shown, "  --database-pool, --database-acquire-timeout, --database-timeout (%r)" % line)
    rc, line, out = check_config([], dict(env, DATABASE_URL=pg.uri))
    ok(rc == 0 and line is not None and line.startswith("database " + shown),
       "  DATABASE_URL when MICROD_DATABASE is unset (%r)" % line)
    rc, line, out = check_config([], dict(env, DATABASE_URL="host=elsewhere",
                                          MICROD_DATABASE=pg.socket_conninfo,
                                          MICROD_DATABASE_POOL="4"))
    ok(rc == 0 and line == "database user='microd' dbname='microd' host='%s' port='%d': 4 connections, "
       "acquire timeout 1000 ms, statement timeout 5000 ms, pipeline on" % (pg.dir, pg.port),
       "  MICROD_DATABASE before DATABASE_URL, key=value, MICROD_DATABASE_POOL (%r)" % line)
    rc, line, out = check_config([], env)
    ok(rc == 0 and line == "database: off", "  without it: database: off (%r)" % line)


def test_refusals(pg):
    env = env_without_db()
    secret = "S3cretPw"
    cases = [
        (["--database", "postgresql://u:%s@[bad" % secret],
         "microd: --database: invalid value (not shown: it may hold a password): not a libpq URI or "
         "key=value connection string"),
        (["--database", "host=a password=%s port" % secret],
         "microd: --database: invalid value (not shown: it may hold a password): not a libpq URI or "
         "key=value connection string"),
        (["--database="], "microd: --database: invalid value '(not shown)' (expected a libpq URI or "
         "key=value connection string)"),
        (["--database", "x" * 4095 + secret], "microd: --database: invalid value '(not shown)' "
         "(expected a libpq URI or key=value connection string)"),
        (["--database-pool", "0"], "microd: --database-pool: invalid value '0' (expected an integer "
         "from 1 to 1024)"),
        (["--database-pool", "many"], "microd: --database-pool: invalid value 'many' (expected an "
         "integer from 1 to 1024)"),
        (["--database-acquire-timeout", "0"], "microd: --database-acquire-timeout: invalid value '0' "
         "(expected seconds from 0.001 to 60, e.g. 1 or 0.25)"),
        (["--database-acquire-timeout", "61"], "microd: --database-acquire-timeout: invalid value "
         "'61' (expected seconds from 0.001 to 60, e.g. 1 or 0.25)"),
        (["--database-timeout", "-1"], "microd: --database-timeout: invalid value '-1' (expected "
         "seconds from 0.001 to 3600, e.g. 5 or 0.5)"),
        (["--database-timeout", "1.0001"], "microd: --database-timeout: invalid value '1.0001' "
         "(expected seconds from 0.001 to 3600, e.g. 5 or 0.5)"),
        (["--database", pg.uri, "--check", "database=tcp://127.0.0.1:1", "--check-config"],
         "microd: --check database=...: with --database, database is the built-in check's name"),
    ]
    for args, want in cases:
        r = subprocess.run([BIN] + args, env=env, capture_output=True, text=True, timeout=10)
        ok(r.returncode == 2 and r.stderr.strip() == want and secret not in r.stderr
           and pg.password not in r.stderr,
           "%s: exit 2, %r (%d %r)" % (args[0] if len(args[-1]) < 100 else args[0] + " (4 KiB)",
                                       want[8:60], r.returncode, r.stderr.strip()[:160]))
    r = subprocess.run([BIN, "--check-config"], env=dict(env, MICROD_DATABASE="postgresql://u:%s@[bad" % secret),
                       capture_output=True, text=True)
    ok(r.returncode == 2 and r.stderr.startswith("microd: MICROD_DATABASE: invalid value (not shown")
       and secret not in r.stderr, "MICROD_DATABASE: exit 2 naming the variable (%r)" % r.stderr.strip()[:80])
    r = subprocess.run([BIN, "--check-config"], env=dict(env, DATABASE_URL="postgresql://u:%s@[bad" % secret),
                       capture_output=True, text=True)
    ok(r.returncode == 2 and r.stderr.startswith("microd: DATABASE_URL: invalid value (not shown")
       and secret not in r.stderr, "DATABASE_URL: exit 2 naming the variable (%r)" % r.stderr.strip()[:80])
    # Without --database the name is free, as before.
    r = subprocess.run([BIN, "--check-config", "--check", "database=tcp://127.0.0.1:1"], env=env,
                       capture_output=True, text=True)
    ok(r.returncode == 0, "without --database, --check database=... is a check like any (%d)" % r.returncode)


NAMES = sorted(os.path.basename(f) for f in __import__("glob").glob(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "app", "sql", "*.sql")))
PENDING = "%d migrations pending: %s" % (len(NAMES), ", ".join(NAMES))


def fresh_db(pg, name):
    pg.psql("create database %s" % name)
    return pg.uri.rsplit("/", 1)[0] + "/" + name


def migrate(uri):
    r = subprocess.run([BIN, "migrate", "--database", uri], env=env_without_db(), capture_output=True,
                       text=True, timeout=60)
    return r.returncode


def test_pending(pg):
    uri = fresh_db(pg, "d_pending")
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--log-format", "text",
                                    "--database", uri, "--health-details", "--check-interval", "0.1"],
                                   env_without_db())
    if not ok(port is not None, "migrations pending at start: microd serves all the same"):
        return
    want = PENDING + " (microd migrate, or --migrate)"
    ok(poll(lambda: (verbose_database(port)[1] or {}).get("output") == want, 3, 0.05),
       "  /readyz?verbose: the database check fails naming them: %r (%r)"
       % (want, (verbose_database(port)[1] or {}).get("output")))
    ok(get(port, "/readyz")[0] == 503 and get(port, "/livez")[0] == 200, "  /readyz 503, /livez 200")
    text = open(log).read()
    ok("database: statements not checked at start (%s): the database check does it once it can" % PENDING
       in text, "  the start says the statements were not checked, and why")
    ok(migrate(uri) == 0, "microd migrate applies them meanwhile")
    ok(poll(lambda: get(port, "/readyz")[0] == 200, 3, 0.05), "  then /readyz 200, without a restart")
    ok(poll(lambda: re.search(r"database: the \d+ statements match the schema", open(log).read()), 2, 0.05),
       "  and the database check has found the statements matching the schema")
    ok(stop_microd(proc, log) == 0, "  SIGTERM: exit 0")


def test_migrate_flag(pg):
    uri = fresh_db(pg, "d_flag")
    args = [BIN, "--port", "0", "--bind", "127.0.0.1", "--log-format", "text", "--database", uri,
            "--check-interval", "0.1"]
    proc, port, log = start_microd(args + ["--migrate"], env_without_db())
    if not ok(port is not None, "--migrate on a fresh database: microd serves"):
        print(open(log).read())
        return
    text = open(log).read()
    ok(all("migrate: applied %s" % n in text for n in NAMES)
       and text.find("migrate: applied") < text.find("listening on"),
       "  every file applied before it listens (so before READY=1)")
    ok(re.search(r"database: the \d+ statements match the schema", text),
       "  then the statements are checked against the schema at start")
    ok(poll(lambda: get(port, "/readyz")[0] == 200, 3, 0.05), "  /readyz 200")
    ok(stop_microd(proc, log) == 0, "  SIGTERM: exit 0")
    proc, port, log = start_microd(args, dict(env_without_db(), MICROD_MIGRATE="1"))
    ok(port is not None and "migrate: nothing to apply" in open(log).read(),
       "MICROD_MIGRATE=1: the same, nothing left to apply")
    if port is not None:
        stop_microd(proc, log)
    pg.psql("update microd_migrations set checksum = 'x' where name = '%s'" % NAMES[0], db="d_flag")
    proc, port, log = start_microd(args + ["--migrate"], env_without_db())
    rc = proc.wait(timeout=20)
    text = open(log).read()
    ok(port is None and rc == 2, "--migrate with a changed checksum: no start, exit 2 as microd migrate's (%s)"
       % rc)
    ok("was applied with checksum x" in text and "--migrate: the migrations failed (exit 2, as microd "
       "migrate): not started" in text, "  the log says which file and why")
    proc, port, log = start_microd(args + ["--health-details"], env_without_db())
    want = "%s: checksum changed (applied with another one: restore the file, or fix the database)" % NAMES[0]
    ok(port is not None and poll(lambda: (verbose_database(port)[1] or {}).get("output") == want, 3, 0.05),
       "without --migrate: it serves, the database check failing with %r, not 'pending' (%r)"
       % (want, (verbose_database(port)[1] or {}).get("output") if port else None))
    if port is not None:
        stop_microd(proc, log)
    pg.stop()
    proc, port, log = start_microd(args + ["--migrate"], env_without_db())
    rc = proc.wait(timeout=30)
    ok(port is None and rc == 1, "--migrate with the database down: no start, exit 1 (%s)" % rc)
    pg.restart()


def check_config_statements(uri):
    r = subprocess.run([BIN, "--check-config", "--database", uri], env=env_without_db(),
                       capture_output=True, text=True, timeout=30)
    line = [x for x in r.stdout.split("\n") if x.startswith("statements:")]
    return r.returncode, line[0] if line else None, r.stderr


def test_check_config(pg):
    uri = fresh_db(pg, "d_check")
    rc, line, err = check_config_statements(uri)
    ok(rc == 0 and line == "statements: not checked: " + PENDING,
       "--check-config, migrations pending: exit 0, the statements not checked, naming them (%r)" % line)
    migrate(uri)
    rc, line, err = check_config_statements(uri)
    ok(rc == 0 and line == "statements: all match the schema",
       "--check-config on the migrated database: the statements match (%r)" % line)
    bad = uri.replace(":%d/" % pg.port, ":1/")
    rc, line, err = check_config_statements(bad)
    ok(rc == 0 and line is not None and line.startswith(
        "statements: not checked: the database cannot be reached: connection to server at"),
       "--check-config with the database unreachable: exit 0, not checked, saying why (%r)" % line)
    # The statement table mismatching the schema: the notes' table with a
    # column renamed. It stops a start only once a statement reads it.
    pg.psql("alter table notes rename column title to titel", db="d_check")
    rc, line, err = check_config_statements(uri)
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--log-format", "json",
                                    "--database", uri], env_without_db())
    # Whether one reads it is the source's to say, not the start's (which
    # is what is tested).
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "app", "statements.c")
    if "title" not in open(src).read():
        if port is not None:
            stop_microd(proc, log)
        skip("no statement of the table reads notes.title yet (the notes resource's)")
        skip("no statement of the table reads notes.title yet (the notes resource's)")
        return
    def messages():
        return "\n".join(json.loads(x).get("msg", "") for x in open(log) if x.startswith("{"))
    if port is not None:  # it started: the check failed
        text, rc2 = messages(), "started"
        stop_microd(proc, log)
    else:
        rc2 = proc.wait(timeout=20)
        text = messages()
        os.unlink(log)
    m = re.search(r'database: (statement \S+: column "title"(?: of relation "notes")? does not exist): not started', text)
    named = m.group(1) if m else None
    ok(rc2 == 2 and m, "a statement that does not match the schema stops the start: exit 2, naming it "
       "(%s %s)" % (rc2, named or text[-300:]))
    ok(rc == 2 and m and err.strip() == "microd: " + named,
       "  --check-config says the same on stderr, exit 2 (%d %r)" % (rc, err.strip()))


def test_down_then_mismatch(pg):
    """The database down at start (so the statements are not compared then),
    up later with a schema that does not match a statement: the database
    check fails naming the statement, and passes once the schema matches."""
    uri = fresh_db(pg, "d_late")
    migrate(uri)
    pg.psql("alter table notes rename column title to titel", db="d_late")
    pg.stop()
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--log-format", "text",
                                    "--database", uri, "--check-interval", "0.1", "--health-details"],
                                   env_without_db())
    if not ok(port is not None, "the database down at start, its schema not matching: microd starts"):
        pg.restart()
        return
    pg.restart()
    want = re.compile(r'^statement \S+: column "title"(?: of relation "notes")? does not exist$')
    got = [None]

    def named():
        got[0] = (verbose_database(port)[1] or {}).get("output")
        return bool(got[0] and want.match(got[0]))
    ok(poll(named, 5, 0.05) and get(port, "/readyz")[0] == 503,
       "  the database up: /readyz 503, the check naming the statement (%r)" % got[0])
    pg.psql("alter table notes rename column titel to title", db="d_late")
    ok(poll(lambda: get(port, "/readyz")[0] == 200, 5, 0.05),
       "  the schema mended: /readyz 200 without a restart")
    stop_microd(proc, log)


def main():
    with Cluster() as pg:
        migrate(pg.uri)
        test_pending(pg)
        test_migrate_flag(pg)
        test_check_config(pg)
        test_settings(pg)
        test_refusals(pg)
        test_metrics(pg)
        test_down_then_up_then_down(pg)
        test_down_then_mismatch(pg)
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
