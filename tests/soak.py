#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# soak.py -- a bounded soak over every route, errors included, and a short
# run under valgrind memcheck (TAP).
#
# wrk replays a cycle of requests (every route, 400, 404, 405, 415) on 8
# keep-alive connections for SOAK_SECONDS (make check: 3 s, some 100,000
# requests; make soak: 20 s, about a million). Resident memory after a
# warm-up must grow by less than 1 MiB over the soak. Then microd runs under
# memcheck for a few seconds of the same requests and a SIGTERM: no error,
# nothing definitely lost.
import os
import re
import shutil
import signal
import subprocess
import tempfile

from server import BIN, start_microd, stop_microd
from tap import done, ok, skip

SECONDS = int(os.environ.get("SOAK_SECONDS", "3"))
SANITIZED = "/sanitize/" in BIN or "/tsan/" in BIN

SCRIPT = r'''
-- Built in init(): wrk sets the Host header only once the script has loaded.
local reqs
init = function(args)
reqs = {
  wrk.format("GET", "/health"),
  wrk.format("GET", "/ready"),
  wrk.format("GET", "/version"),
  wrk.format("GET", "/metrics"),
  wrk.format("POST", "/echo", {["Content-Type"] = "application/json"}, '{"a":[1,2,3],"b":"x"}'),
  wrk.format("POST", "/echo", {["Content-Type"] = "application/json"}, '{"a":'),
  wrk.format("POST", "/echo", {["Content-Type"] = "text/plain"}, "x"),
  wrk.format("GET", "/nope"),
  wrk.format("DELETE", "/health"),
  wrk.format("GET", "/health?probe=1", {["X-Request-Id"] = "soak-1"}),
}
end
local i = 0
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
'''


def start(cmd):
    return start_microd(cmd + ["--bind", "127.0.0.1", "--port", "0", "--threads", "2"], timeout=60)


def load(port, script, seconds, conns=8):
    """wrk for seconds; (requests answered, socket errors)."""
    out = subprocess.run(["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "--timeout", "10s", "-s", script,
                          "http://127.0.0.1:%d" % port], capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    m = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return (int(m.group(1)) if m else 0), errors.groups() if errors else None


def rss_kib(pid):
    m = re.search(r"VmRSS:\s+(\d+) kB", open("/proc/%d/status" % pid).read())
    return int(m.group(1))


def main():
    if shutil.which("wrk") is None:
        skip("wrk is not installed", 6)
        return done()
    tmp = tempfile.mkdtemp(prefix="microd-soak-")
    script = os.path.join(tmp, "soak.lua")
    open(script, "w").write(SCRIPT)

    proc, port, log = start([BIN])
    if not ok(port is not None, "microd starts"):
        proc.kill()
        return done()
    warm, _ = load(port, script, 1)
    before = rss_kib(proc.pid)
    got, errors = load(port, script, SECONDS)
    after = rss_kib(proc.pid)
    ok(got >= 1000 * SECONDS and errors is None,
       "%d requests in %d s over every route, errors included (after %d warm-up); wrk socket errors: %s"
       % (got, SECONDS, warm, errors or "none"))
    if SANITIZED:
        skip("resident memory under a sanitizer is the sanitizer's")
    else:
        ok(after - before < 1024, "resident memory grew %d KiB over the soak (%d -> %d KiB; limit 1024)"
           % (after - before, before, after))
    ok(stop_microd(proc, log, timeout=20) == 0, "and microd stops with status 0")

    if SANITIZED or shutil.which("valgrind") is None:
        skip("memcheck needs the plain build and valgrind", 2)
    else:
        proc, port, log = start(["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
                                 "--error-exitcode=99", BIN])
        got, _ = load(port, script, 3, conns=4) if port else (0, None)
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=60)
        with open(log) as f:
            text = f.read()
        summary = re.search(r"ERROR SUMMARY: (\d+) errors", text)
        lost = re.search(r"definitely lost: ([\d,]+) bytes", text)
        ok(status == 0 and summary is not None and summary.group(1) == "0",
           "memcheck: %d requests and a SIGTERM, exit %s, %s errors" % (got, status,
                                                                      summary.group(1) if summary else "?"))
        ok(lost is None or lost.group(1) == "0", "memcheck: nothing definitely lost (%s bytes)"
           % (lost.group(1) if lost else "0"))
        os.unlink(log)
    shutil.rmtree(tmp)
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
