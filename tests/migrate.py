#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# migrate.py -- `microd migrate` against a real PostgreSQL (TAP): a fresh
# database gets every file once, a second run applies nothing, a changed
# checksum stops with 2, two runners at once apply each file once, a failing
# file is rolled back alone, the database down is 1 without the password,
# bad usage is 2
import glob
import hashlib
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pg import Cluster  # noqa: E402
from server import BIN  # noqa: E402
from tap import done, ok  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = sorted(glob.glob(os.path.join(ROOT, "src/app/sql/*.sql")))
NAMES = [os.path.basename(f) for f in FILES]
LOCK_KEY = 120299407437668  # "microd" in ASCII, src/db/migrate.c's


def env(**kw):
    """The environment without libpq's PG* and the database variables,
    with JSON log lines, plus kw."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("PG") and k not in ("MICROD_DATABASE", "DATABASE_URL")}
    e["MICROD_LOG_FORMAT"] = "json"
    e.update(kw)
    return e


def messages(text):
    """stderr with each JSON log line replaced by its msg; other lines (the
    usage errors, a sanitizer's report) as they are."""
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line)["msg"])
        except (ValueError, KeyError, TypeError):
            out.append(line)
    return "\n".join(out) + "\n"


def migrate(*args, **kw):
    """Exit status, stdout, and stderr with the log lines' messages."""
    r = subprocess.run([BIN, "migrate"] + list(args), env=env(**kw), capture_output=True, text=True,
                       timeout=60)
    return r.returncode, r.stdout, messages(r.stderr)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def uri_of(pg, db):
    return pg.uri.rsplit("/", 1)[0] + "/" + db


def fresh(pg, db):
    pg.psql("create database %s" % db)
    return uri_of(pg, db)


def test_usage(pg):
    rc, out, err = migrate("--help")
    ok(rc == 0 and out.startswith("Usage: microd migrate [--database URL] [--dry-run]"),
       "--help: exit 0 and the usage on stdout")
    rc, out, err = migrate("--bogus", DATABASE_URL=pg.uri)
    ok(rc == 2 and "microd migrate: unknown option '--bogus' (see --help)" in err,
       "an unknown argument: exit 2 naming it (%d %s)" % (rc, err.strip()))
    rc, out, err = migrate("--database")
    ok(rc == 2 and "microd migrate: --database: missing value (expected a libpq URI or key=value "
       "connection string)" in err, "--database without a value: exit 2, as the server says it (%d %s)"
       % (rc, err.strip()))
    rc, out, err = migrate()
    ok(rc == 0 and "migrate: no database (--database, MICROD_DATABASE, DATABASE_URL): nothing to migrate"
       in err, "no database anywhere (an init container without its Secret): exit 0, saying so (%d %s)"
       % (rc, err.strip()))
    rc, out, err = migrate("--database=", DATABASE_URL=pg.uri)
    ok(rc == 2 and "microd migrate: --database: invalid value '(not shown)' (expected a libpq URI or "
       "key=value connection string)" in err, "an empty --database: exit 2 (%d %s)" % (rc, err.strip()))
    rc, out, err = migrate("--database", "postgresql://app:s3cret@[::1")
    ok(rc == 2 and "microd migrate: --database: invalid value (not shown: it may hold a password): not a "
       "libpq URI or key=value connection string" in err and "s3cret" not in err,
       "a URL that does not parse: exit 2, the server's words, and the URL is not shown (%d %s)"
       % (rc, err.strip()))
    rc, out, err = migrate(MICROD_DATABASE="postgresql://app:s3cret@[::1")
    ok(rc == 2 and "microd migrate: MICROD_DATABASE: invalid value (not shown" in err and "s3cret" not in err,
       "  MICROD_DATABASE is read by the server's option row too, and named (%d %s)" % (rc, err.strip()))


def test_fresh(pg):
    uri = fresh(pg, "m_fresh")
    rc, out, err = migrate("--dry-run", "--database", uri)
    ok(rc == 0 and all("migrate: %s is pending" % n in err for n in NAMES)
       and "migrate: %d pending, 0 applied already" % len(NAMES) in err,
       "--dry-run on a fresh database: exit 0, every file pending (%d %s)" % (rc, err.strip()))
    ok(pg.psql("select to_regclass('microd_migrations') is null", db="m_fresh").strip() == "t",
       "and it created nothing, not even microd_migrations")

    t0 = time.monotonic()
    rc, out, err = migrate("--database", uri)
    ok(rc == 0, "a fresh database: exit 0 in %.2f s (%s)" % (time.monotonic() - t0, err.strip()))
    for f, n in zip(FILES, NAMES):
        ok("migrate: applied %s (sha256 %s) in " % (n, sha256(f)) in err,
           "the log names %s and its file's SHA-256" % n)
    ok("migrate: applied %d, 0 applied already" % len(NAMES) in err, "and counts them")
    ok(pg.password not in err, "no password in the log")
    ok("NOTICE" not in err, "and no notice of the server's on stderr")
    ok(pg.psql("select count(*) from microd_migrations where applied_at > now() - interval '1 minute'",
               db="m_fresh").strip() == str(len(NAMES)), "each row has its applied_at")
    rows = pg.psql("select name || ' ' || checksum from microd_migrations order by name",
                   db="m_fresh").split()
    ok(rows == [x for f, n in zip(FILES, NAMES) for x in (n, sha256(f))],
       "microd_migrations holds each file's name and the SHA-256 of its bytes")
    cols = pg.psql("select column_name, data_type, is_nullable, coalesce(column_default, ''), "
                   "is_identity, coalesce(identity_generation, '') from information_schema.columns "
                   "where table_name = 'notes' order by ordinal_position", db="m_fresh").splitlines()
    ok(cols == ["id|bigint|NO||YES|ALWAYS", "title|text|NO||NO|",
                "body|text|NO|''::text|NO|", "tags|ARRAY|NO|'{}'::text[]|NO|",
                "created_at|timestamp with time zone|NO|now()|NO|",
                "updated_at|timestamp with time zone|NO|now()|NO|", "version|bigint|NO|1|NO|"],
       "notes: id bigint generated always as identity, title, body '', tags '{}', the two times, "
       "version 1 (%s)"
       % cols)
    ok(pg.psql("select string_agg(a.attname, ',') from pg_index i join pg_attribute a on "
               "a.attrelid = i.indrelid and a.attnum = any(i.indkey) where i.indrelid = "
               "'notes'::regclass and i.indisprimary", db="m_fresh").strip() == "id",
       "notes' primary key is id")
    world = pg.psql("select count(*), count(distinct id), min(id), max(id), min(randomnumber) >= 1, "
                    "max(randomnumber) <= 10000, count(distinct randomnumber) > 5000 from world",
                    db="m_fresh").strip()
    ok(world == "10000|10000|1|10000|t|t|t",
       "world: ids 1 to 10000, each randomnumber in 1..10000, and they vary (%s)" % world)

    rc, out, err = migrate("--database", uri)
    ok(rc == 0 and "migrate: nothing to apply, all %d applied already" % len(NAMES) in err
       and "migrate: applied " + NAMES[0] not in err,
       "a second run: exit 0, nothing to apply (%d %s)" % (rc, err.strip()))
    ok(pg.psql("select count(*) from microd_migrations", db="m_fresh").strip() == str(len(NAMES)),
       "and no row added")

    # A checksum that differs from the file's: the file was edited.
    pg.psql("update microd_migrations set checksum = repeat('0', 64) where name = '%s'" % NAMES[0],
            db="m_fresh")
    want = "migrate: %s was applied with checksum %s, but the file's is %s" % (
        NAMES[0], "0" * 64, sha256(FILES[0]))
    rc, out, err = migrate("--database", uri)
    ok(rc == 2 and want in err, "a changed checksum: exit 2 naming the file and both checksums (%d %s)"
       % (rc, err.strip()))
    rc, out, err = migrate("--dry-run", "--database", uri)
    ok(rc == 2 and want in err, "and --dry-run says the same, with 2")
    pg.psql("update microd_migrations set checksum = '%s' where name = '%s'" % (sha256(FILES[0]), NAMES[0]),
            db="m_fresh")

    # A row of a file this binary lacks (a newer microd applied it).
    pg.psql("insert into microd_migrations (name, checksum) values ('9999_future.sql', 'x')",
            db="m_fresh")
    rc, out, err = migrate("--database", uri)
    ok(rc == 0 and "migrate: 9999_future.sql is applied but not in this binary" in err,
       "a row for a file not in the binary: a warning naming it, exit 0 (%d %s)" % (rc, err.strip()))


def test_sources(pg):
    uri = fresh(pg, "m_env")
    bad = uri_of(pg, "m_env").replace(":%d/" % pg.port, ":1/")
    rc, out, err = migrate(DATABASE_URL=uri)
    ok(rc == 0 and "applied %s" % NAMES[0] in err, "DATABASE_URL alone is used (%d)" % rc)
    rc, out, err = migrate(MICROD_DATABASE=uri, DATABASE_URL=bad)
    ok(rc == 0 and "nothing to apply" in err, "MICROD_DATABASE comes before DATABASE_URL (%d %s)"
       % (rc, err.strip()))
    kv = pg.socket_conninfo.replace("dbname=microd", "dbname=m_env")
    rc, out, err = migrate("--database", kv)
    ok(rc == 0 and "nothing to apply" in err and "host='%s'" % pg.dir in err,
       "a key=value string over the unix socket works too (%d %s)" % (rc, err.strip()))
    rc, out, err = migrate("--database=" + uri, MICROD_DATABASE=bad)
    ok(rc == 0 and "nothing to apply" in err, "--database=URL comes before MICROD_DATABASE (%d %s)"
       % (rc, err.strip()))


def test_failure(pg):
    """A file that fails is rolled back alone; the ones before it stay."""
    uri = fresh(pg, "m_fail")
    pg.psql("create table world (mine integer)", db="m_fail")
    rc, out, err = migrate("--database", uri)
    ok(rc == 1 and "migrate: %s failed (SQLSTATE 42P07), rolled back: " % NAMES[1] in err
       and 'relation "world" already exists' in err,
       "a file that fails: exit 1 with its SQLSTATE and the server's message (%d %s)" % (rc, err.strip()))
    ok(pg.psql("select name from microd_migrations", db="m_fail").split() == [NAMES[0]],
       "the file before it stays applied, the failed one is not recorded")
    ok(pg.psql("select string_agg(column_name, ',') from information_schema.columns "
               "where table_name = 'world'", db="m_fail").strip() == "mine",
       "and nothing of the failed file remains")


def wait_until(cond, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)  # a poll interval, not a wait for an event
    return cond()


def check_once(pg, db, results, what):
    codes = [r[0] for r in results]
    errs = [r[2] for r in results]
    ok(codes == [0, 0], "%s: both exit 0 (%s)" % (what, " | ".join(e.strip() for e in errs if e)))
    ok(pg.psql("select count(*), count(distinct name) from microd_migrations", db=db).strip()
       == "%d|%d" % (len(NAMES), len(NAMES)), "%s: each file recorded once" % what)
    ok(all(sum(("migrate: applied %s " % n) in e for e in errs) == 1 for n in NAMES),
       "%s: each file applied by exactly one of them" % what)
    ok(sum("nothing to apply" in e for e in errs) == 1 and
       pg.psql("select count(*) from world", db=db).strip() == "10000",
       "%s: the other found nothing to apply; world has 10000 rows, not twice that" % what)


def run_two(uri):
    procs = [subprocess.Popen([BIN, "migrate", "--database", uri], env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    return [(p.returncode, o, messages(e)) for p in procs for o, e in [p.communicate(timeout=60)]]


def test_concurrent(pg):
    uri = fresh(pg, "m_race")
    check_once(pg, "m_race", run_two(uri), "two at once on a fresh database")

    # Both start while a session holds the lock, so neither may begin
    # before the other is waiting too: they are let go at the same moment.
    uri = fresh(pg, "m_held")
    holder = subprocess.Popen([os.path.join(pg.bin, "psql"), "-X", "-q", "-h", pg.dir, "-p", str(pg.port),
                               "-U", "microd", "-d", "m_held"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, text=True,
                              env={k: v for k, v in os.environ.items() if not k.startswith("PG")})
    holder.stdin.write("select pg_advisory_lock(%d);\n" % LOCK_KEY)
    holder.stdin.flush()
    ok(wait_until(lambda: pg.psql("select count(*) from pg_locks where locktype = 'advisory' "
                                  "and granted").strip() == "1", 10), "a session holds the lock")
    procs = [subprocess.Popen([BIN, "migrate", "--database", uri], env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    waiting = wait_until(lambda: pg.psql("select count(*) from pg_locks where locktype = 'advisory' "
                                         "and not granted").strip() == "2", 10)
    ok(waiting, "both runners wait for the advisory lock while another session holds it")
    holder.stdin.close()
    holder.wait(timeout=30)
    results = [(p.returncode, o, messages(e)) for p in procs for o, e in [p.communicate(timeout=60)]]
    check_once(pg, "m_held", results, "two let go at once")


def test_down(pg):
    uri = pg.uri
    pg.stop()
    rc, out, err = migrate("--database", uri)
    ok(rc == 1 and "migrate: cannot connect to user='microd' dbname='microd' host='127.0.0.1' port='%d': "
       "connection to server at \"127.0.0.1\", port %d failed: Connection refused" % (pg.port, pg.port) in err,
       "the database down: exit 1 with libpq's reason (%d %s)" % (rc, err.strip()))
    ok(pg.password not in err and pg.password not in out, "and the password is in neither stdout nor stderr")
    pg.restart()
    rc, out, err = migrate("--database", uri.replace(pg.password, "wrong-s3cret"))
    ok(rc == 1 and 'password authentication failed for user "microd"' in err and "s3cret" not in err,
       "a wrong password: exit 1 with the server's reason, the password not shown (%d %s)"
       % (rc, err.strip()))


def main():
    with Cluster() as pg:
        test_usage(pg)
        test_fresh(pg)
        test_sources(pg)
        test_failure(pg)
        test_concurrent(pg)
        test_down(pg)
    return done()


if __name__ == "__main__":
    sys.exit(main())
