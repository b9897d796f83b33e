#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# layout.py -- the two wings hold (TAP): only src/server/ speaks
# libmicrohttpd and only src/db/ libpq, the engine never includes the
# service's files, the router names no handler, no file holds more than a tenth of src/, and a new .c
# file under src/app/, or a new .sql file under src/app/sql/, is built without editing the Makefile.
import os
import re
import shutil
import subprocess
import sys
import tempfile

from tap import done, ok

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
INCLUDE = re.compile(r'^\s*#\s*include\s+[<"]([^>"]+)[>"]', re.M)


def sources():
    """Every .c and .h under src/, as paths relative to src/."""
    out = []
    for d, _, files in os.walk(SRC):
        for f in files:
            if f.endswith((".c", ".h")):
                out.append(os.path.relpath(os.path.join(d, f), SRC))
    return sorted(out)


def text(rel):
    with open(os.path.join(SRC, rel)) as f:
        return f.read()


def includes(rel):
    """What rel includes, resolved as the compiler does with -Isrc: next to
    the file first, then from src/."""
    out = []
    for name in INCLUDE.findall(text(rel)):
        beside = os.path.normpath(os.path.join(os.path.dirname(rel), name))
        out.append(beside if os.path.exists(os.path.join(SRC, beside)) else name)
    return out


def main():
    files = sources()
    ok(any(f.startswith("server/") for f in files) and any(f.startswith("app/") for f in files),
       "src/server/ and src/app/ exist (%d files)" % len(files))

    mhd = [f for f in files if "microhttpd.h" in includes(f)]
    ok(mhd and all(f.startswith("server/") for f in mhd),
       "only files under src/server/ include <microhttpd.h>: %s" % ", ".join(mhd))

    pq = [f for f in files if "libpq-fe.h" in includes(f)]
    ok(all(f.startswith("db/") for f in pq),
       "only files under src/db/ include <libpq-fe.h>%s" % (": " + ", ".join(pq) if pq else ""))

    # The engine is everything but the service's folder and main.c, which
    # puts the two together.
    upward = ["%s -> %s" % (f, i) for f in files
              if not f.startswith("app/") and f != "main.c"
              for i in includes(f) if i.startswith("app/")]
    ok(not upward, "no include runs from the engine into src/app/%s"
       % (": " + ", ".join(upward) if upward else ""))

    down = ["%s -> %s" % (f, i) for f in files if f.startswith("app/")
            for i in includes(f) if i.startswith("server/") or i == "microhttpd.h"]
    ok(not down, "the service includes nothing of src/server/%s"
       % (": " + ", ".join(down) if down else ""))

    router = text("router.c")
    ok("handle_" not in router and not any(i.startswith("app/") for i in includes("router.c")),
       "src/router.c names no handler")

    lines = {f: text(f).count("\n") for f in files}
    total = sum(lines.values())
    biggest = max(lines, key=lines.get)
    ok(lines[biggest] * 10 <= total,
       "no file in src/ holds more than 10%% of its %d lines (largest: %s, %d)"
       % (total, biggest, lines[biggest]))

    # A copy of the tree with one more file in src/app/: make's plan for the
    # binary compiles and links it, with the Makefile untouched.
    tmp = tempfile.mkdtemp(prefix="microd-layout-")
    try:
        for d in ("src", "tests"):
            shutil.copytree(os.path.join(ROOT, d), os.path.join(tmp, d))
        shutil.copy(os.path.join(ROOT, "Makefile"), tmp)
        with open(os.path.join(tmp, "src/app/widgets.c"), "w") as f:
            f.write("/* widgets.c -- a team's new resource */\n")
        plan = subprocess.run(["make", "-n", "-C", tmp, "BUILD=" + os.path.join(tmp, "b"),
                               "COMMIT=layout", os.path.join(tmp, "b/microd")],
                              capture_output=True, text=True)
        compiles = re.search(r"-c -o \S*/obj/app/widgets\.o src/app/widgets\.c", plan.stdout)
        links = re.search(r"-o \S*/b/microd .*obj/app/widgets\.o", plan.stdout)
        ok(plan.returncode == 0 and compiles and links,
           "a new src/app/widgets.c is compiled and linked without editing the Makefile%s"
           % ("" if compiles and links else ": " + (plan.stdout + plan.stderr)[-400:]))

        # The migrations' table: a .sql file added, edited, removed, or
        # badly named, each seen by the next make with the Makefile as is.
        sql = os.path.join(tmp, "src/app/sql")
        gen = os.path.join(tmp, "b/gen/app_sql.c")

        def table():
            r = subprocess.run(["make", "-s", "-C", tmp, "BUILD=" + os.path.join(tmp, "b"),
                                "COMMIT=layout", gen], capture_output=True, text=True)
            if r.returncode != 0:
                return r.returncode, r.stderr, {}
            text = open(gen).read()
            arrays = {int(n): bytes(int(x, 16) for x in re.findall(r"0x([0-9a-f]{2})", body))
                      for n, body in re.findall(r"sql_(\d+)\[\] = \{(.*?)\};", text, re.S)}
            rows = re.findall(r'\{"([^"]+)", \(const char \*\)sql_(\d+)', text)
            return 0, "", dict((name, arrays[int(n)]) for name, n in rows)

        with open(os.path.join(sql, "0003_widgets.sql"), "wb") as f:
            f.write(b"CREATE TABLE widgets (id int); -- \xc3\xa9\n")
        rc, err, files = table()
        ok(rc == 0 and list(files)[-1] == "0003_widgets.sql"
           and files["0003_widgets.sql"] == b"CREATE TABLE widgets (id int); -- \xc3\xa9\n\0",
           "a new src/app/sql/0003_widgets.sql is built in last, byte for byte with a NUL after%s"
           % ("" if rc == 0 else ": " + err))
        with open(os.path.join(sql, "0003_widgets.sql"), "ab") as f:
            f.write(b"SELECT 1;")
        rc, err, files = table()
        ok(files.get("0003_widgets.sql", b"").endswith(b"SELECT 1;\0"), "an edit is seen by the next make")
        os.unlink(os.path.join(sql, "0003_widgets.sql"))
        rc, err, files = table()
        ok(rc == 0 and "0003_widgets.sql" not in files and files, "a removed file is gone from the table")
        with open(os.path.join(sql, "widgets.sql"), "w") as f:
            f.write("SELECT 1;\n")
        rc, err, files = table()
        ok(rc != 0 and "widgets.sql: a migration's name is digits, then letters, digits, _ - or ." in err,
           "a name that does not start with digits stops the build: %s" % err.strip())
    finally:
        shutil.rmtree(tmp)
    return done()


if __name__ == "__main__":
    sys.exit(main())
