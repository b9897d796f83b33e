#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# layout.py -- the two wings hold (TAP): only src/server/ speaks
# libmicrohttpd and only src/db/ libpq, the engine never includes the
# service's files, the router names no handler, no file holds more than a tenth of src/, and a new .c
# file under src/app/ is built without editing the Makefile.
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
    finally:
        shutil.rmtree(tmp)
    return done()


if __name__ == "__main__":
    sys.exit(main())
