#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# bench.py -- `make bench`: microd against nginx-light, measured in one run
#
# The server under test is pinned to CPU 0 with one worker, wrk to CPU 1.
# microd and nginx take turns (A B A B ...) for ROUNDS rounds; each figure is
# the median with min-max. The cost of request metrics is measured apart, in
# alternating pairs against a build without them, and so is /health against
# the code before the router and request view (build/bench/before/). GET
# /health on a new connection is timed while the handler pool is saturated,
# and while a handler blocks the I/O thread (the test-hooks build). HTTPS
# (TLS 1.3, one certificate for both) is measured against nginx in
# alternating pairs, keep-alive and a handshake per request, and microd's
# certificate rotation under load (`python3 tests/bench.py tls` alone). The
# before-handler chain (rate limit, bearer tokens) is measured on GET /health
# and GET /version against the last commit before it (the same binary with
# nothing enabled when that is not built), in alternating pairs and in
# instructions (`python3 tests/bench.py middleware` alone). The notes resource
# (GET /notes/{id}, POST /notes at 64 connections) is measured against
# pgbench running the same statements on a throw-away PostgreSQL of
# tests/pg.py (`python3 tests/bench.py notes` alone). The gateway: microd
# beside nginx at 64 busy connections with none idle and while another process
# holds as many idle keep-alive connections as the open-file limit allows, and
# RSS per idle connection (`python3 tests/bench.py gateway` alone); /health
# against the last commit before the epoll default (build/bench/pregateway/).
# The TechEmpower test types (issue 27): /json against nginx, /db, /queries
# and /updates at 64 and 256 connections against pgbench running the same
# statements, and /queries with and without the pipeline (`python3
# tests/bench.py te` alone).
# Every load is bounded in time
# and targets 127.0.0.1 only. Writes
# build/bench/results.md and build/bench/results.svg.
import json
import math
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from server import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "build/bench")
MICROD = os.path.join(ROOT, "build/microd")
NOMETRICS = os.path.join(ROOT, "build/bench/nometrics/microd")
BEFORE = os.path.join(ROOT, "build/bench/before/microd")
BEFORE_COMMIT = os.environ.get("BENCH_BEFORE", "a65e14b")
# The last commit before the before-handler chain (make bench builds it).
PRECHAIN = os.path.join(ROOT, "build/bench/prechain/microd")
PRECHAIN_COMMIT = os.environ.get("BENCH_PRECHAIN", "3ba251b")
# The last commit before the two wings (the engine in src/server/, the service
# in src/app/): GET /health's instructions must stay within 1% of it.
PREWINGS = os.path.join(ROOT, "build/bench/prewings/microd")
PREWINGS_COMMIT = os.environ.get("BENCH_PREWINGS", "5b69d38")
# The last commit before the epoll default and its tickers (issue 25):
# /health at 64 connections with none idle must be no slower than there.
PREGATEWAY = os.path.join(ROOT, "build/bench/pregateway/microd")
PREGATEWAY_COMMIT = os.environ.get("BENCH_PREGATEWAY", "790ed47")
HOOKS = os.path.join(ROOT, "build/hooks/microd")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "3"))
IDLE = int(os.environ.get("BENCH_IDLE", "5000"))
TWO_CPUS = (os.cpu_count() or 1) >= 2
SERVER_CPUS = {0} if TWO_CPUS else None
LOAD_CPU = ["taskset", "-c", "1"] if TWO_CPUS else []
PAIRS = int(os.environ.get("BENCH_PAIRS", "24"))
PAIR_SECONDS = int(os.environ.get("BENCH_PAIR_SECONDS", "2"))
PROBES = int(os.environ.get("BENCH_PROBES", "400"))
PROBE_TIMEOUT = 2.0
# Probes start at most one per PROBE_INTERVAL seconds, so that 400 of them
# span the pool's turnover (each /delay/500 ending, the next one queued)
# rather than the first few milliseconds of the load.
PROBE_INTERVAL = 0.01
# Seconds the probes of one load may take: they stop there, however few.
PROBE_BUDGET = float(os.environ.get("BENCH_PROBE_BUDGET", "10"))
POOL_ARGS = ["--example-routes", "--handler-threads", "2", "--handler-queue", "4"]
LOAD_CLIENTS = 8
# A client refused with 503 waits this long before its next try, as one that
# backs off would; a tight retry loop would time the 503 path instead.
RETRY_PAUSE = 0.02


def get_health(port, timeout=0.2):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return False
    try:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
    finally:
        s.close()


def http_get(port, path, timeout, head=""):
    """GET path on a new connection, with head's header lines (each ending
    in CRLF) if any: the whole reply as bytes, b"" when it is not complete
    within timeout seconds of the connect."""
    deadline = time.monotonic() + timeout
    reply = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: b\r\n%sConnection: close\r\n\r\n"
                      % (path.encode(), head.encode()))
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return b""
                s.settimeout(left)
                data = s.recv(65536)
                if not data:
                    return reply
                reply += data
    except OSError:
        return b""


def microd_server(binary, *extra, threads=1):
    """binary as every microd in the bench runs: loopback, the port it is
    given, one worker unless told, only warnings logged, then extra."""
    return Server(os.path.basename(binary), lambda p: [
        binary, "--bind", "127.0.0.1", "--port", str(p), "--threads", str(threads), "--log-level", "warn"]
        + list(extra))


def spawn_pinned(cmd):
    """Starts cmd on the server's CPU without a taskset exec in between (that
    exec would count as start-up): the child inherits this process's affinity,
    which is set for the spawn only; the prober then runs on the load CPU."""
    if SERVER_CPUS is None:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, SERVER_CPUS)
    try:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        os.sched_setaffinity(0, {1} if TWO_CPUS else mine)


class Server:
    def __init__(self, name, cmd, prepare=None):
        self.name, self.cmd, self.prepare = name, cmd, prepare
        self.proc = None

    def start(self):
        """Starts it; returns seconds from exec to the first 200 (any config
        file is written before the clock starts)."""
        self.port = free_port()
        if self.prepare:
            self.prepare(self.port)
        t0 = time.monotonic()
        self.proc = spawn_pinned(self.cmd(self.port))
        deadline = t0 + 10
        while time.monotonic() < deadline:
            if get_health(self.port):
                return time.monotonic() - t0
            if self.proc.poll() is not None:
                break
        raise RuntimeError("%s did not start" % self.name)

    def rss_kib(self, field="VmRSS"):
        """Resident memory of the server's processes (nginx: master + worker);
        field RssAnon counts only private anonymous memory, RssFile the
        mapped files (program and shared libraries)."""
        pids = [self.proc.pid]
        children = "/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)
        if os.path.exists(children):
            pids += [int(p) for p in open(children).read().split()]
        total = 0
        for pid in pids:
            m = re.search(field + r":\s+(\d+) kB", open("/proc/%d/status" % pid).read())
            total += int(m.group(1)) if m else 0
        return total

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wrk(port, conns, path="/health", extra=(), seconds=None, scheme="http", env=None):
    seconds = seconds or SECONDS
    cmd = LOAD_CPU + ["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "--latency", "--timeout", "5s"] \
        + list(extra) + ["%s://127.0.0.1:%d%s" % (scheme, port, path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, env=env).stdout
    return parse_wrk(out)


def parse_wrk(out):
    """wrk's report: req/s, latency (ms), the requests it completed, its
    socket errors by kind and the non-2xx/3xx answers."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)

    def pct(p):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % p, out, re.M)
        if not m:
            return None
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]

    m = re.search(r"^\s+Latency\s+([\d.]+)(us|ms|s)\s", out, re.M)
    mean = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else None
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": pct(50), "p99": pct(99), "mean": mean,
            "errors": errors.group(0) if errors else "",
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "socket": dict(zip(("connect", "read", "write", "timeout"),
                               (int(v) for v in sock.groups()) if sock else (0, 0, 0, 0))),
            "non2xx": int(non2xx.group(1)) if non2xx else 0}


def idle_rss_per_conn(server, n):
    """Opens n keep-alive connections, each after one request; KiB per connection."""
    before = server.rss_kib()
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: b\r\n\r\n")
        conns.append(s)
    for s in conns:
        s.settimeout(5)
        s.recv(4096)
    after = server.rss_kib()
    for s in conns:
        s.close()
    return (after - before) / n


BROWSER_HEADERS = (
    "Host: api.example.com\r\nConnection: keep-alive\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
    "Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    "sec-ch-ua: \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"\r\nsec-ch-ua-mobile: ?0\r\n"
    "sec-ch-ua-platform: \"Linux\"\r\nSec-Fetch-Site: none\r\nSec-Fetch-Mode: navigate\r\n"
    "Sec-Fetch-Dest: document\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n"
    "Accept-Language: en-US,en;q=0.9\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.2\r\n"
    "X-Forwarded-Proto: https\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n")


def largest_header_block(port):
    """Bytes of the largest request head (a browser's headers behind a proxy
    plus a Cookie grown until refused) that still gets a 200."""
    def status(cookie):
        head = "GET /health HTTP/1.1\r\n%sCookie: %s\r\n\r\n" % (BROWSER_HEADERS, "a" * cookie)
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        reply = b""
        try:
            s.sendall(head.encode())
            while b"\r\n" not in reply:
                data = s.recv(4096)
                if not data:
                    break
                reply += data
        except OSError:
            pass
        finally:
            s.close()
        return reply[9:12] == b"200", len(head)

    lo, hi = 0, 64 * 1024
    if not status(lo)[0]:
        return 0
    while hi - lo > 8:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if status(mid)[0] else (lo, mid)
    return status(lo)[1]


def instructions_per_request(binary, n=2000, extra=()):
    """Instructions per GET /health under callgrind: repeatable whatever else
    the machine does. Two runs, 200 and 200 + n requests, on one keep-alive
    connection; the difference over n leaves start-up and shutdown out.
    extra: more of microd's flags."""
    def run(count):
        out = os.path.join(OUT, "callgrind.out")
        log = os.path.join(OUT, "callgrind.log")
        with open(log, "w") as err:
            proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, binary,
                                     "--bind", "127.0.0.1", "--port", "0", "--threads", "1", *extra],
                                    stderr=err)
        port, deadline = None, time.monotonic() + 60
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            m = re.search(r"listening on \S*?:(\d+)\b", open(log).read())
            port = int(m.group(1)) if m else None
            time.sleep(0.05)
        s = socket.create_connection(("127.0.0.1", port))
        for _ in range(count):
            s.sendall(b"GET /health HTTP/1.1\r\nHost: b\r\n\r\n")
            buf = b""
            while not buf.endswith(b'{"status":"ok"}\n'):
                buf += s.recv(4096)
        s.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        return int(re.search(r"Collected : (\d+)", open(log).read()).group(1))

    return (run(200 + n) - run(200)) / n


def nginx_conf(port_placeholder="@PORT@"):
    d = os.path.join(OUT, "nginx")
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""# generated by tests/bench.py: the reference for make bench
worker_processes 1;
daemon off;
master_process on;
pid %(d)s/nginx.pid;
error_log stderr error;
events { worker_connections 20000; }
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    server {
        listen 127.0.0.1:%(port)s backlog=4096;
        location = /health {
            default_type application/json;
            add_header Cache-Control no-store;
            return 200 '{"status":"ok"}\\n';
        }
        location = /json {
            default_type application/json;
            return 200 '{"message":"Hello, World!"}\\n';
        }
    }
}
""" % {"d": d, "port": port_placeholder})
    return conf


def echo_script():
    path = os.path.join(OUT, "echo.lua")
    items = ",".join('{"id":%d,"name":"item-%03d","tags":["a","b"],"ok":true}' % (i, i) for i in range(18))
    body = '{"items":[%s]}' % items
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = \'%s\'\nwrk.headers["Content-Type"] = "application/json"\n'
                % body)
    return path, len(body)


def fmt_range(vals, spec="%.0f"):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    return (spec + " (" + spec + "-" + spec + ")") % (statistics.median(vals), min(vals), max(vals))


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def paired(a, b, conns=64):
    """Throughput of a over b, both running at once (the idle one sleeps in
    poll), loaded in turn A B B A A B ... for PAIRS pairs of PAIR_SECONDS each so
    that drift on a shared machine hits both alike; returns the ratio of each
    adjacent pair."""
    a.start()
    b.start()
    ratios = []
    try:
        for i in range(PAIRS):
            first, second = (a, b) if i % 2 == 0 else (b, a)
            x = wrk(first.port, conns, seconds=PAIR_SECONDS)["rps"]
            y = wrk(second.port, conns, seconds=PAIR_SECONDS)["rps"]
            ratios.append(x / y if first is a else y / x)
    finally:
        a.stop()
        b.stop()
    return ratios


def hold_idle(port, n):
    """A child process that opens n keep-alive connections to port, one
    answered GET /health each, and keeps them until its stdin closes
    (tests/gateway.py's holder): (process, connections held)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gateway import HOLDER
    proc = subprocess.Popen(LOAD_CPU + [sys.executable, "-c", HOLDER, str(port), str(n)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if line.startswith("error"):
        line = proc.stdout.readline().strip()
    return proc, int(line.split()[1]) if line.startswith("held ") else 0


def gateway_bench():
    """microd and nginx in turn, ROUNDS rounds: req/s and p99 at 64 busy
    keep-alive connections with none idle, then while a child process holds
    the idle set (the open-file limit less 1000), and at 256 busy with none
    idle; RSS per idle connection from the server's VmRSS before and after
    the set is held. Returns {server: {figure: [values]}}."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    idle_n = max(0, hard - 1000)
    conf = nginx_conf()
    servers = {
        "microd": microd_server(MICROD),
        "nginx": Server("nginx", lambda p: ["nginx", "-e", "stderr", "-c", conf + ".run"],
                        prepare=lambda p: open(conf + ".run", "w").write(
                            open(conf).read().replace("@PORT@", str(p)))),
    }
    if os.path.exists(PREGATEWAY):
        servers["microd-pregateway-poll"] = microd_server(PREGATEWAY)
    got = {name: {} for name in servers}
    for rnd in range(ROUNDS):
        for name, srv in servers.items():
            g = got[name]
            # Timeouts long enough for the set to stay open (nginx's
            # keepalive_timeout is 75 s; microd's defaults close it at 10 s).
            if name.startswith("microd"):
                srv = microd_server(srv.cmd(0)[0], "--idle-timeout", "300", "--header-timeout", "300")
            srv.start()
            try:
                for label, c in (("none idle c=64", 64), ("none idle c=256", 256)):
                    r = wrk(srv.port, c)
                    g.setdefault(label + " rps", []).append(r["rps"])
                    g.setdefault(label + " p99", []).append(r["p99"])
                    g.setdefault(label + " timeouts", []).append(r["socket"]["timeout"])
                before = srv.rss_kib()
                holder, held = hold_idle(srv.port, idle_n)
                try:
                    after = srv.rss_kib()
                    g.setdefault("held", []).append(held)
                    g.setdefault("per_conn", []).append((after - before) / held if held else None)
                    r = wrk(srv.port, 64)
                    g.setdefault("idle c=64 rps", []).append(r["rps"])
                    g.setdefault("idle c=64 p99", []).append(r["p99"])
                    g.setdefault("idle c=64 timeouts", []).append(r["socket"]["timeout"])
                finally:
                    holder.stdin.close()
                    holder.wait(timeout=60)
            finally:
                srv.stop()
            print("gateway round %d: %s done" % (rnd + 1, name), file=sys.stderr, flush=True)
    got["idle_n"] = idle_n
    return got


def gateway_lines(got):
    """The gateway table and the issue's targets, met or not."""
    m, n = got["microd"], got["nginx"]
    held = min(m.get("held", [0]) + n.get("held", [0]))

    def r(a, b):
        return a / b if a and b else 0

    lines = ["microd (default event loop and limits, one thread, `--idle-timeout 300 --header-timeout 300`) "
             "beside nginx, 64 busy keep-alive connections (`wrk -c64`, GET /health) with none idle and while "
             "another process holds %d idle keep-alive connections, each answered once; %d rounds, median "
             "(min-max):" % (held, ROUNDS), "",
             "| figure | microd | nginx | microd/nginx |", "|---|---|---|---|"]
    for key, spec, what in (("none idle c=64 rps", "%.0f", "req/s, none idle"),
                            ("idle c=64 rps", "%.0f", "req/s, %d idle" % held),
                            ("none idle c=64 p99", "%.2f", "p99 ms, none idle"),
                            ("idle c=64 p99", "%.2f", "p99 ms, %d idle" % held),
                            ("none idle c=256 rps", "%.0f", "req/s at 256 busy, none idle"),
                            ("per_conn", "%.2f", "RSS per idle connection, KiB")):
        lines.append("| %s | %s | %s | %.2f |" % (what, fmt_range(m.get(key, []), spec),
                                                  fmt_range(n.get(key, []), spec),
                                                  r(med(m.get(key, [])), med(n.get(key, [])))))
    if "microd-pregateway-poll" in got:
        o = got["microd-pregateway-poll"]
        lines.append("| before: commit %s (poll) req/s none idle / %d idle, p99 ms idle | %s / %s, %s | | |" % (
            PREGATEWAY_COMMIT, held, fmt_range(o.get("none idle c=64 rps", [])),
            fmt_range(o.get("idle c=64 rps", [])), fmt_range(o.get("idle c=64 p99", []), "%.2f")))
    timeouts = sum(sum(v) for k, v in m.items() if k.endswith("timeouts"))
    targets = (
        ("req/s with the idle set >= 0.9 x microd's own with none idle",
         r(med(m.get("idle c=64 rps", [])), med(m.get("none idle c=64 rps", []))), 0.9, True),
        ("req/s with the idle set >= 0.9 x nginx's with the idle set",
         r(med(m.get("idle c=64 rps", [])), med(n.get("idle c=64 rps", []))), 0.9, True),
        ("p99 with the idle set <= 2 x nginx's",
         r(med(m.get("idle c=64 p99", [])), med(n.get("idle c=64 p99", []))), 2.0, False),
        ("256 busy on one thread >= 0.9 x the 64-connection req/s",
         r(med(m.get("none idle c=256 rps", [])), med(m.get("none idle c=64 rps", []))), 0.9, True),
        ("RSS per idle connection <= 6 KiB (KiB)", med(m.get("per_conn", [])) or 0, 6.0, False))
    lines += ["", "| target | value | met |", "|---|---|---|"]
    for what, v, bound, at_least in targets:
        lines.append("| %s | %.2f | %s |" % (what, v, "yes" if (v >= bound if at_least else v <= bound) else "NO"))
    lines.append("| no request of microd's timed out (wrk, 5 s) | %d | %s |" % (timeouts, "yes" if timeouts == 0
                                                                                 else "NO"))
    return lines


def gateway_main():
    """python3 tests/bench.py gateway: the gateway rows alone."""
    os.makedirs(OUT, exist_ok=True)
    lines = gateway_lines(gateway_bench())
    text = "\n".join(lines)
    open(os.path.join(OUT, "gateway.md"), "w").write(text + "\n")
    print(text)
    return 0


def sweep(srv, counts=(1, 16, 127, 128, 256, 512, 1000)):
    """req/s at each connection count, one SECONDS load each: a collapse
    (the epoll stall once 128 connections are busy) shows as a cliff."""
    srv.start()
    try:
        return [(c, wrk(srv.port, c)["rps"]) for c in counts]
    finally:
        srv.stop()


class Load:
    """LOAD_CLIENTS clients of GET path in a child process on the load CPU
    (its threads would otherwise hold the prober's GIL); bounded by seconds."""

    def __init__(self, port, path, seconds):
        self.path = path
        self.proc = subprocess.Popen(
            LOAD_CPU + [sys.executable, os.path.abspath(__file__), "load", str(port), path,
                        str(LOAD_CLIENTS), str(seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        if not ready or self.proc.stdout.readline().strip() != "sent":
            self.stop()
            raise RuntimeError("load of %s did not start" % path)

    def stop(self):
        """Ends the load: answers by status ("error": no complete reply)."""
        try:
            out, _ = self.proc.communicate(timeout=60)  # closes stdin: the cue
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        lines = out.split("\n")
        return json.loads(lines[-2]) if len(lines) > 1 and lines[-2].startswith("{") else {}


def load_main(argv):
    """python3 tests/bench.py load PORT PATH CLIENTS SECONDS: CLIENTS threads,
    each GET PATH on a new connection, one request at a time, until standard
    input closes or SECONDS pass. Prints "sent" once every client has sent
    its first request (or failed to), and at the end the answers by status as
    JSON."""
    port, path, clients, seconds = int(argv[0]), argv[1], int(argv[2]), float(argv[3])
    deadline = time.monotonic() + seconds
    stop = threading.Event()
    first = threading.Semaphore(0)
    counts, lock = {}, threading.Lock()
    head = b"GET %s HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n" % path.encode()

    def client():
        started = False
        while not stop.is_set() and time.monotonic() < deadline:
            status = "error"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
                    s.sendall(head)
                    if not started:
                        started = True
                        first.release()
                    reply = b""
                    while True:
                        data = s.recv(4096)
                        if not data:
                            break
                        reply += data
                    status = reply[9:12].decode("ascii", "replace") or "error"
            except OSError:
                pass
            if not started:
                started = True
                first.release()
            with lock:
                counts[status] = counts.get(status, 0) + 1
            if status == "503":
                stop.wait(RETRY_PAUSE)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for _ in range(clients):
        first.acquire(timeout=max(0.0, deadline - time.monotonic()))
    print("sent", flush=True)
    select.select([sys.stdin], [], [], max(0.0, deadline - time.monotonic()))
    stop.set()
    for t in threads:
        t.join()
    print(json.dumps(counts), flush=True)
    return 0


def probe_health(port, sample=None):
    """PROBES GET /health one after another, each on a new connection and at
    most one per PROBE_INTERVAL, for at most PROBE_BUDGET seconds: ms from
    connect to the whole answer, inf for one with no 200 within
    PROBE_TIMEOUT. sample(), if given, runs after every 50th."""
    times = []
    start = time.monotonic()
    while len(times) < PROBES and time.monotonic() < start + PROBE_BUDGET:
        time.sleep(max(0.0, start + len(times) * PROBE_INTERVAL - time.monotonic()))  # pacing only
        t0 = time.perf_counter()
        ok = http_get(port, "/health", PROBE_TIMEOUT).startswith(b"HTTP/1.1 200")
        times.append((time.perf_counter() - t0) * 1000 if ok else math.inf)
        if sample and len(times) % 50 == 0:
            sample()
    return times


def pool_gauges(port):
    """(busy handler threads, queue depth) from /metrics; None if unread."""
    text = http_get(port, "/metrics", PROBE_TIMEOUT).decode("utf-8", "replace")
    busy = re.search(r"^microd_handler_busy (\d+)", text, re.M)
    queued = re.search(r"^microd_handler_queue_depth (\d+)", text, re.M)
    return (int(busy.group(1)), int(queued.group(1))) if busy and queued else None


def percentile(times, p):
    """Nearest-rank percentile: a sorted sample's value at rank ceil(p% n)."""
    vals = sorted(times)
    return vals[max(0, math.ceil(p / 100 * len(vals)) - 1)]


def fmt_ms(v):
    return "> %.0f (no answer)" % (PROBE_TIMEOUT * 1000) if v == math.inf else "%.2f" % v


def blocked_latency():
    """GET /health latency with no load, with the handler pool saturated by
    /delay/500, and (the test-hooks build) with /test/block?ms=500 blocking
    the only I/O thread. Rows of (what, times, load answers), and the pool
    gauges seen during the saturated probes."""
    rows, samples = [], []
    full = (int(POOL_ARGS[POOL_ARGS.index("--handler-threads") + 1]),
            int(POOL_ARGS[POOL_ARGS.index("--handler-queue") + 1]))
    srv = microd_server(MICROD, *POOL_ARGS)
    srv.start()
    try:
        rows.append(("build/microd, no load", probe_health(srv.port), None))
        load = Load(srv.port, "/delay/500", PROBE_BUDGET + 30)
        try:
            deadline = time.monotonic() + 10
            while pool_gauges(srv.port) != full:
                if time.monotonic() > deadline:
                    raise RuntimeError("the handler pool did not fill: %s" % (pool_gauges(srv.port),))
            times = probe_health(srv.port, lambda: samples.append(pool_gauges(srv.port)))
        finally:
            answers = load.stop()
        rows.append(("build/microd, every handler thread on /delay/500, queue full", times, answers))
    finally:
        srv.stop()
    print("handler pool latency done", file=sys.stderr, flush=True)
    if not os.path.exists(HOOKS):
        rows.append(("build/hooks/microd: missing (make test-progs), contrast skipped", [], None))
        return rows, samples, full
    srv = microd_server(HOOKS)
    srv.start()
    try:
        rows.append(("build/hooks/microd, no load", probe_health(srv.port), None))
        load = Load(srv.port, "/test/block?ms=500", PROBE_BUDGET + 30)
        try:
            times = probe_health(srv.port)
        finally:
            answers = load.stop()
        rows.append(("build/hooks/microd, /test/block?ms=500 on the I/O thread", times, answers))
    finally:
        srv.stop()
    print("I/O thread blocking latency done", file=sys.stderr, flush=True)
    return rows, samples, full


def blocked_latency_lines(rows, samples, full):
    lines = ["`python3 tests/bench.py latency` (or `make bench`): "
             "GET /health on a new connection (connect to whole answer), %d one after another, one every "
             "%g ms at most, or %g s of them, whichever ends first; no answer within %g s counts as one, at "
             "that time. Load: %d clients, each GET on a new "
             "connection, one request at a time (a client refused with 503 waits %g ms before its next try). "
             "Pool build: `build/microd --bind 127.0.0.1 --threads 1 --log-level warn %s`; contrast: "
             "`build/hooks/microd --bind 127.0.0.1 --threads 1 --log-level warn`, whose /test/block sleeps "
             "on the I/O thread as any slow handler did before the handler pool. Servers on CPU 0, probes and "
             "load on CPU 1%s." % (PROBES, PROBE_INTERVAL * 1000, PROBE_BUDGET, PROBE_TIMEOUT, LOAD_CLIENTS,
                                   RETRY_PAUSE * 1000, " ".join(POOL_ARGS),
                                   "" if TWO_CPUS else " (only one CPU: not pinned)"), "",
             "| server, load | probes | p50 ms | p99 ms | max ms | no answer | load answers by status |",
             "|---|---|---|---|---|---|---|"]
    verdict = "not measured"
    for what, times, answers in rows:
        if not times:
            lines.append("| %s | 0 | | | | | |" % what)
            continue
        lines.append("| %s | %d | %s | %s | %s | %d | %s |" % (
            what, len(times), fmt_ms(percentile(times, 50)), fmt_ms(percentile(times, 99)),
            fmt_ms(max(times)), sum(1 for t in times if t == math.inf),
            ", ".join("%s: %d" % kv for kv in sorted(answers.items())) if answers is not None else ""))
        if "/delay/" in what:
            p99 = percentile(times, 99)
            verdict = "%s (p99 %s ms)" % ("met" if p99 < 5 else "NOT met", fmt_ms(p99))
    seen = [g for g in samples if g is not None]
    lines += ["", "Handler pool full (%d busy, %d queued) at %d of %d /metrics samples taken every 50 probes "
              "under the /delay/500 load. Target, p99 under 5 ms with the pool saturated: %s."
              % (full[0], full[1], sum(1 for g in seen if g == full), len(samples), verdict)]
    return lines


def checks_paths(path="/readyz?exclude=hangs", pairs=8):
    """path with 5 configured checks (4 TCP listeners of the bench's own, and
    an HTTP one that accepts and never answers, so it times out on every run)
    against /health, on the same server, loaded in turn for pairs pairs of
    PAIR_SECONDS: the ratios of req/s and of p99. /readyz itself answers 503
    while that check fails (its access-log lines come once a second at most);
    ?exclude=hangs keeps the hanging check running but out of the answer."""
    socks = []
    for _ in range(5):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1024)  # never accepted: a connect succeeds, a GET hangs
        socks.append(s)
    args = ["--check-interval", "1", "--check-timeout", "0.5"]
    for i, s in enumerate(socks[:4]):
        args += ["--check", "dep%d=tcp://127.0.0.1:%d" % (i, s.getsockname()[1])]
    args += ["--check", "hangs=http://127.0.0.1:%d/" % socks[4].getsockname()[1]]
    srv = microd_server(MICROD, *args)
    rps, p99 = [], []
    srv.start()
    try:
        for i in range(pairs):
            order = (path, "/health") if i % 2 == 0 else ("/health", path)
            got = {p: wrk(srv.port, 64, path=p, seconds=PAIR_SECONDS) for p in order}
            rps.append(got[path]["rps"] / got["/health"]["rps"])
            if got[path]["p99"] and got["/health"]["p99"]:
                p99.append(got[path]["p99"] / got["/health"]["p99"])
            errors = got["/health"]["errors"]
    finally:
        srv.stop()
        for s in socks:
            s.close()
    print("checks pairs done", file=sys.stderr, flush=True)
    return rps, p99, errors


def checks_main():
    """python3 tests/bench.py checks: only the /readyz against /health row."""
    for path in ("/readyz?exclude=hangs", "/readyz"):
        rps, p99, _ = checks_paths(path)
        print("GET %s with 5 checks / GET /health, c=64: req/s %s, p99 %s"
              % (path, fmt_range(rps, "%.3f"), fmt_range(p99, "%.3f")))
    return 0


# The before-handler chain (src/middleware.c) with every link on, against
# microd before the chain (BENCH_PRECHAIN): three bearer tokens, /metrics behind them too, a rate
# limit that refuses nothing and two trusted proxy blocks (127.0.0.1, wrk's
# address, among them, so X-Forwarded-For is looked up on every request).
# The requirement: GET /health, a probe that both links skip, within 3%.
MW_TOKENS = ("bench-1-5d0c9a7e41b2f386", "bench-2-c83e1f60a9d4b725", "bench-3-1f7a4c2e9b06d853")
MW_ARGS = ["--auth-metrics", "--rate-limit", "1000000", "--rate-burst", "1000000",
           "--rate-limit-clients", "16384", "--trusted-proxy", "127.0.0.1/32", "--trusted-proxy", "10.0.0.0/8"]
MW_TARGET = 0.97
MW_PAIRS = int(os.environ.get("BENCH_MW_PAIRS", "8"))


def reply_status(reply):
    """The status code of a whole reply from http_get, None if there is none."""
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", reply)
    return int(m.group(1)) if m else None


def middleware_check(on, off, token):
    """Fails loudly unless the chain is at work on on and absent from off:
    /version 401 without a token and 200 with one, RateLimit on its answers,
    /metrics 401 without a token, 3 tokens and nothing limited once in;
    /health 200 without a token and without RateLimit (a probe); off answers
    /version 200 without a token."""
    bearer = "Authorization: Bearer %s\r\n" % token
    want = [(on, "/version", "", 401, b"\r\nratelimit: "), (on, "/version", bearer, 200, b"\r\nratelimit: "),
            (on, "/metrics", "", 401, None), (on, "/metrics", bearer, 200, b"\nmicrod_auth_tokens 3\n"),
            (on, "/metrics", bearer, 200, b"\nmicrod_rate_limited_total 0\n"),
            (on, "/health", "", 200, None), (off, "/version", "", 200, None)]
    for srv, path, head, status, needle in want:
        reply = http_get(srv.port, path, 5, head)
        got = reply_status(reply)
        if got != status or (needle is not None and needle not in reply.lower()):
            raise RuntimeError("middleware bench: GET %s %s on the %s server: %s, not %d%s; the chain "
                               "is not as configured (%s)" % (
                                   path, "with a token" if head else "without a token",
                                   "chain-on" if srv is on else "baseline", got, status,
                                   " with %r" % needle.strip().decode() if needle else "",
                                   " ".join(srv.cmd(srv.port))))
    reply = http_get(on.port, "/health", 5)
    if b"\r\nratelimit: " in reply.lower():
        raise RuntimeError("middleware bench: GET /health carries RateLimit: the probe is not exempt")


def middleware_paths(pairs=MW_PAIRS):
    """GET /health (exempt from both links), then GET /version with a valid
    bearer token (through both), on microd with the whole chain on against
    microd before the chain; both run at once, started alike, and
    are loaded in turn for pairs pairs of PAIR_SECONDS at c=64 (the same
    request to both: the baseline ignores the token). For each path: the
    ratios on/off of req/s and of p99, each side's median req/s, and what
    wrk saw fail on each side (non-2xx answers, socket errors), so that a
    401 or 429 cannot pass for speed."""
    res = {}
    with tempfile.TemporaryDirectory(prefix="microd-bench-") as tmp:
        tokens = os.path.join(tmp, "tokens")
        with open(tokens, "w") as f:
            f.write("# tests/bench.py middleware\n" + "\n".join(MW_TOKENS) + "\n")
        # The baseline is today's microd before the chain when make bench
        # built it, else this build with nothing of the chain enabled.
        base = PRECHAIN if os.path.exists(PRECHAIN) else MICROD
        res["baseline"] = ("commit %s" % PRECHAIN_COMMIT if base == PRECHAIN
                           else "this build, nothing enabled")
        on = microd_server(MICROD, "--auth-token-file", tokens, *MW_ARGS)
        off = microd_server(base)
        on.start()
        off.start()
        try:
            middleware_check(on, off, MW_TOKENS[-1])
            for path, extra in (("/health", []), ("/version", ["-H", "Authorization: Bearer " + MW_TOKENS[-1]])):
                r = res[path] = {"rps": [], "p99": [], "on": [], "off": [],
                                 "non2xx": {"on": 0, "off": 0}, "socket": {"on": 0, "off": 0}}
                for i in range(pairs):
                    order = (on, off) if i % 2 == 0 else (off, on)
                    got = {s: wrk(s.port, 64, path=path, extra=extra, seconds=PAIR_SECONDS) for s in order}
                    r["rps"].append(got[on]["rps"] / got[off]["rps"])
                    if got[on]["p99"] and got[off]["p99"]:
                        r["p99"].append(got[on]["p99"] / got[off]["p99"])
                    for side, s in (("on", on), ("off", off)):
                        r[side].append(got[s]["rps"])
                        r["non2xx"][side] += got[s]["non2xx"]
                        r["socket"][side] += sum(got[s]["socket"].values())
            m = re.search(rb"\nmicrod_rate_limited_total (\d+)\n",
                          http_get(on.port, "/metrics", 5, "Authorization: Bearer %s\r\n" % MW_TOKENS[0]))
            res["limited"] = int(m.group(1)) if m else None
        finally:
            on.stop()
            off.stop()
        # Instructions, which the machine's load does not change: the
        # figure that settles a few percent.
        res["instr"] = (instructions_per_request(MICROD, extra=["--auth-token-file", tokens] + MW_ARGS),
                        instructions_per_request(base))
    print("middleware pairs done", file=sys.stderr, flush=True)
    return res


def middleware_rows(res):
    """Rows of the summary table (figure, microd, nginx, ratio) for
    middleware_paths()'s result."""
    rows = []
    for path, what in (("/health", "a probe, exempt from both links; target: within 3%"),
                       ("/version", "with a valid bearer token to both, through both links; informative")):
        r = res[path]
        failed = r["non2xx"]["on"] + r["non2xx"]["off"] + r["socket"]["on"] + r["socket"]["off"]
        verdict = ""
        if path == "/health" and failed == 0:
            verdict = "; target %s" % ("met" if med(r["rps"]) >= MW_TARGET else "NOT met")
        rows.append(("keep-alive c=64 GET %s req/s (%s), chain on / %s, %d alternating pairs of "
                     "%d s (microd only)" % (path, what, res["baseline"], len(r["rps"]), PAIR_SECONDS),
                     "on %s / off %s" % (fmt_range(r["on"]), fmt_range(r["off"])), "",
                     "req/s: %s; p99: %s%s; non-2xx on/off: %d/%d, socket errors on/off: %d/%d%s" % (
                         fmt_range(r["rps"], "%.3f"), fmt_range(r["p99"], "%.3f"), verdict,
                         r["non2xx"]["on"], r["non2xx"]["off"], r["socket"]["on"], r["socket"]["off"],
                         "" if failed == 0 else " (NOT all answered 200: ratio invalid)")))
    on, off = res["instr"]
    rows.append(("instructions per GET /health (callgrind, 2000 requests on one connection), chain on / %s"
                 % res["baseline"],
                 "on %.0f / off %.0f" % (on, off), "", "%.4f" % (on / off)))
    return rows


def middleware_main():
    """python3 tests/bench.py middleware: only the before-handler chain rows;
    exit status 1 if any request of the loads failed."""
    os.makedirs(OUT, exist_ok=True)
    res = middleware_paths()
    for label, sides, _, ratio in middleware_rows(res):
        print("%s:\n  %s\n  %s" % (label, sides, ratio))
    for path in ("/health", "/version"):
        print("  %s on/off by pair: %s" % (path, " ".join("%.3f" % x for x in res[path]["rps"])))
    print("microd_rate_limited_total on the chain-on server after the loads: %s" % res["limited"])
    bad = sum(res[p][k][side] for p in ("/health", "/version") for k in ("non2xx", "socket")
              for side in ("on", "off"))
    return 1 if bad or res["limited"] != 0 else 0


# HTTPS: microd against nginx with the same certificate, TLS 1.3 forced on
# the client (wrk's OpenSSL, through OPENSSL_CONF), then a rotation under
# load. Certificates come from tests/tls.py's CA at run time, in its
# temporary directory, which also holds nginx's config, pid, log and temp
# paths; all of it is removed at the end.
TLS_PAIRS = int(os.environ.get("BENCH_TLS_PAIRS", "8"))
TLS_SWAPS = 10
# Seconds a swap may take to show in a new handshake (microd looks once a
# second) before it counts as not taken; the rotation's wrk loads stop by
# themselves after TLS_LOAD_BOUND seconds whatever happens.
TLS_SWAP_TIMEOUT = 5.0
TLS_LOAD_BOUND = 70
TLS_ROTATION_CONNS = 32  # each of the two loads: 64 connections in all
TLS13_CNF = """openssl_conf = bench_conf
[bench_conf]
ssl_conf = bench_ssl
[bench_ssl]
system_default = bench_tls13
[bench_tls13]
MinProtocol = TLSv1.3
"""


class TlsServer(Server):
    """A Server that serves HTTPS too, on tls_port (chosen at each start;
    cmd(port, tls_port)); start() returns once a TLS handshake completes."""

    def __init__(self, name, cmd, prepare=None):
        Server.__init__(self, name, lambda p: cmd(p, self.tls_port),
                        prepare and (lambda p: prepare(p, self.tls_port)))

    def start(self):
        self.tls_port = free_port()
        t = Server.start(self)
        deadline = time.monotonic() + 10
        while tls_serial(self.tls_port, None) is None:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("%s: no TLS handshake on %d" % (self.name, self.tls_port))
            time.sleep(0.02)
        return t


def tls_serial(port, ctx):
    """The serial of the certificate a new TLS 1.3 handshake gets (verified
    against the CA when ctx is given), or None when the handshake fails."""
    if ctx is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                cert = t.getpeercert()
                return int(cert["serialNumber"], 16) if cert else -1
    except (OSError, ssl.SSLError):
        return None


def cpu_seconds(pid):
    """User + system CPU of a process so far (all its threads), seconds."""
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def https_wrk(srv, conns, extra, env):
    """wrk over HTTPS to srv for PAIR_SECONDS, with the server's CPU per
    request (µs) and the CPU share (of one core) of server and of wrk."""
    own = resource.getrusage(resource.RUSAGE_CHILDREN)
    s0, w0 = cpu_seconds(srv.proc.pid), time.monotonic()
    r = wrk(srv.tls_port, conns, extra=extra, seconds=PAIR_SECONDS, scheme="https", env=env)
    server, wall = cpu_seconds(srv.proc.pid) - s0, time.monotonic() - w0
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = now.ru_utime + now.ru_stime - own.ru_utime - own.ru_stime
    r["server_us"] = server / r["requests"] * 1e6 if r["requests"] else None
    r["server_cpu"], r["client_cpu"] = server / wall * 100, client / wall * 100
    return r


def tls_pairs(a, b, extra, env, conns=64):
    """a and b (both running) loaded in turn A B B A ... for TLS_PAIRS pairs
    of PAIR_SECONDS: each one's wrk results, and a/b req/s of each pair."""
    got, ratios = {a.name: [], b.name: []}, []
    for i in range(TLS_PAIRS):
        order = (a, b) if i % 2 == 0 else (b, a)
        r = {srv.name: https_wrk(srv, conns, extra, env) for srv in order}
        for name in r:
            got[name].append(r[name])
        ratios.append(r[a.name]["rps"] / r[b.name]["rps"])
    return got, ratios


def negotiated(port, env):
    """Protocol, cipher and key exchange group that OpenSSL's client (with
    the same OPENSSL_CONF as wrk) gets from the server on port."""
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port], input=b"",
                       capture_output=True, timeout=20, env=env)
    out = r.stdout.decode("utf-8", "replace")
    new = re.search(r"New, (\S+), Cipher is (\S+)", out)
    group = re.search(r"(?:Server Temp Key|Negotiated TLS1.3 group): (\w+)", out)
    return "%s %s %s" % (new.group(1), new.group(2), group.group(1) if group else "?") if new else "no handshake"


def nginx_tls_conf(d, cert, key):
    """nginx-light as the reference: one process (master_process off), both
    ports on 127.0.0.1 (plain HTTP for start-up, like every server here),
    TLS 1.3 only, no session tickets (microd sends none and wrk never
    resumes), keep-alive connections not closed after 1000 requests."""
    conf = os.path.join(d, "nginx.conf")
    with open(conf + ".in", "w") as f:
        f.write("""# generated by tests/bench.py tls
worker_processes 1;
daemon off;
master_process off;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:@PORT@ backlog=4096;
        listen 127.0.0.1:@TLSPORT@ ssl backlog=4096;
        ssl_certificate %(cert)s;
        ssl_certificate_key %(key)s;
        ssl_protocols TLSv1.3;
        ssl_session_tickets off;
        location = /health {
            default_type application/json;
            add_header Cache-Control no-store;
            return 200 '{"status":"ok"}\\n';
        }
    }
}
""" % {"d": d, "cert": cert, "key": key})

    def prepare(p, tp):
        open(conf, "w").write(open(conf + ".in").read().replace("@PORT@", str(p)).replace("@TLSPORT@", str(tp)))

    return TlsServer("nginx", lambda p, tp: ["nginx", "-p", d, "-e", os.path.join(d, "error.log"), "-c", conf],
                     prepare)


def microd_tls(cert, key, *extra):
    return TlsServer("microd", lambda p, tp: [
        MICROD, "--bind", "127.0.0.1", "--port", str(p), "--threads", "1", "--log-level", "warn",
        "--tls-port", str(tp), "--tls-cert", cert, "--tls-key", key] + list(extra))


class WrkRun:
    """wrk in the background over HTTPS, stopped by SIGINT (it then reports
    as at the end of its time) or by itself after seconds."""

    def __init__(self, port, conns, extra, seconds, env):
        self.proc = subprocess.Popen(
            LOAD_CPU + ["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "--timeout", "5s"] + list(extra)
            + ["https://127.0.0.1:%d/health" % port], stdout=subprocess.PIPE, text=True, env=env)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return parse_wrk(out)


def tls_rotation(tls, ca, a, b, env):
    """microd on a Secret-style directory (tls.crt and tls.key through
    ..data) under two wrk loads at once, keep-alive and a new connection
    per request, while ..data is swapped TLS_SWAPS times between a and b;
    after each swap, new verifying handshakes until one gets the new
    serial. The loads' results, the checker's handshakes and failures, the
    seconds each swap took to show, and microd_tls_reloads_total."""
    d = tls.secret_dir(a[0], a[1], "bench-secret")
    srv = microd_tls(os.path.join(d, "tls.crt"), os.path.join(d, "tls.key"))
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    serial = (tls.serial_of(a[0]), tls.serial_of(b[0]))
    checks, failed, waits = 0, 0, []
    srv.start()
    try:
        if tls_serial(srv.tls_port, ctx) != serial[0]:
            raise RuntimeError("microd does not serve the first certificate")
        keep = WrkRun(srv.tls_port, TLS_ROTATION_CONNS, [], TLS_LOAD_BOUND, env)
        new = WrkRun(srv.tls_port, TLS_ROTATION_CONNS, ["-H", "Connection: close"], TLS_LOAD_BOUND, env)
        try:
            time.sleep(1)  # both loads running before the first swap
            for i in range(TLS_SWAPS):
                want, pair = (serial[1], b) if i % 2 == 0 else (serial[0], a)
                tls.swap_secret(d, pair[0], pair[1], "bench%d" % (i + 1))
                t0 = time.monotonic()
                while True:
                    got = tls_serial(srv.tls_port, ctx)
                    checks += 1
                    failed += got is None
                    if got == want:
                        waits.append(time.monotonic() - t0)
                        break
                    if time.monotonic() - t0 > TLS_SWAP_TIMEOUT:
                        waits.append(None)
                        break
                    time.sleep(0.05)
                time.sleep(0.2)  # the loads see each certificate for a while
            time.sleep(0.5)
        finally:
            loads = (keep.stop(), new.stop())
        text = http_get(srv.port, "/metrics", PROBE_TIMEOUT).decode("utf-8", "replace")
        reloads = dict(re.findall(r'microd_tls_reloads_total\{result="(\w+)"\} (\d+)', text))
    finally:
        srv.stop()
    return loads, checks, failed, waits, reloads, serial


def tls_bench():
    """The HTTPS rows: keep-alive req/s and handshakes/s (Connection: close,
    one TLS handshake per request) at 64 connections, microd against nginx
    with the same certificate, in alternating pairs; then the rotation.
    Markdown lines."""
    import tls  # tests/tls.py: its CA, leaves and Secret directory (its DIR)
    t_start = time.monotonic()
    try:
        ca = tls.make_ca()
        a, b = tls.make_leaf("a"), tls.make_leaf("b")
        cnf = os.path.join(tls.DIR, "tls13.cnf")
        open(cnf, "w").write(TLS13_CNF)
        env = dict(os.environ, OPENSSL_CONF=cnf)
        ngx_dir = os.path.join(tls.DIR, "nginx")
        os.makedirs(ngx_dir)
        m, n = microd_tls(*a), nginx_tls_conf(ngx_dir, *a)
        m.start()
        try:
            n.start()
            try:
                proto = {s.name: negotiated(s.tls_port, env) for s in (m, n)}
                keep, keep_r = tls_pairs(m, n, [], env)
                print("tls keep-alive pairs done", file=sys.stderr, flush=True)
                hand, hand_r = tls_pairs(m, n, ["-H", "Connection: close"], env)
                print("tls handshake pairs done", file=sys.stderr, flush=True)
            finally:
                n.stop()
        finally:
            m.stop()
        rot = tls_rotation(tls, ca, a, b, env)
        print("tls rotation done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tls.DIR, ignore_errors=True)
    return tls_lines(proto, keep, keep_r, hand, hand_r, rot, time.monotonic() - t_start)


def tls_lines(proto, keep, keep_r, hand, hand_r, rot, took):
    def col(got, key, spec="%.0f"):
        return fmt_range([r[key] for r in got], spec)

    def cost_ratio(got, key):
        return fmt_range([x[key] / y[key] for x, y in zip(got["microd"], got["nginx"]) if x[key] and y[key]],
                         "%.3f")

    def errs(got):
        return sum(sum(r["socket"].values()) + r["non2xx"] for r in got)

    rows = []
    for what, got, ratios, unit in (("keep-alive", keep, keep_r, "request"),
                                    ("new connection per request (one full handshake each)", hand, hand_r,
                                     "handshake")):
        rows.append(("HTTPS %s c=64, %s/s" % (what, "req" if unit == "request" else "handshakes"),
                     col(got["microd"], "rps"), col(got["nginx"], "rps"), fmt_range(ratios, "%.3f")))
        rows.append(("  server CPU per %s, µs" % unit, col(got["microd"], "server_us", "%.1f"),
                     col(got["nginx"], "server_us", "%.1f"), cost_ratio(got, "server_us")))
        rows.append(("  server / wrk CPU, % of a core",
                     "%s / %s" % (col(got["microd"], "server_cpu"), col(got["microd"], "client_cpu")),
                     "%s / %s" % (col(got["nginx"], "server_cpu"), col(got["nginx"], "client_cpu")), ""))
        rows.append(("  wrk errors (socket + non-2xx), all runs", str(errs(got["microd"])),
                     str(errs(got["nginx"])), ""))
    (ka, nc), checks, failed, waits, reloads, serial = rot
    taken = [w for w in waits if w is not None]
    ka_failed = sum(ka["socket"].values()) + ka["non2xx"]
    nc_hs_failed = nc["socket"]["connect"]
    nc_req_failed = nc["socket"]["read"] + nc["socket"]["write"] + nc["socket"]["timeout"] + nc["non2xx"]
    total = ka_failed + nc_hs_failed + nc_req_failed + failed + len(waits) - len(taken)
    lines = ["`python3 tests/bench.py tls` (or `make bench`): HTTPS, the same EC P-256 certificate (made by "
             "tests/tls.py's CA) in both servers; TLS 1.3 forced on the client (wrk's OpenSSL, "
             "`OPENSSL_CONF` with `MinProtocol = TLSv1.3`); negotiated: microd %s, nginx %s. microd "
             "`--threads 1` (default priorities), nginx one process (`master_process off`, `ssl_protocols "
             "TLSv1.3`, `ssl_session_tickets off`, `keepalive_requests 1000000`), both on CPU 0; "
             "`wrk -t1 -c64 -d%ds` on CPU 1 (`-H 'Connection: close'` for handshakes). %d alternating pairs "
             "of %d s; median (min-max); the ratio column is the median (min-max) of the pairs' ratios."
             % (proto["microd"], proto["nginx"], PAIR_SECONDS, TLS_PAIRS, PAIR_SECONDS), "",
             "| HTTPS figure | microd | nginx | microd/nginx |", "|---|---|---|---|"]
    lines += ["| %s | %s | %s | %s |" % r for r in rows]
    busy = [med([r["client_cpu"] for r in hand[name]]) for name in ("microd", "nginx")]
    if min(busy) >= 90:
        lines += ["", "wrk itself used %.0f%% and %.0f%% of its core for the handshakes (OpenSSL's client "
                  "side of a handshake costs more than either server's): handshakes/s is bounded by the "
                  "client there, and the server CPU per handshake is what compares the two servers."
                  % tuple(busy)]
    lines += ["", "Rotation under load: microd `--threads 1` serving tls.crt/tls.key through a Secret-style `..data` "
              "link, %d swaps between serials %d and %d; after each, verifying TLS 1.3 handshakes every 50 ms "
              "until one gets the new serial (taken: %d of %d; %s s after the swap, median (min-max)); "
              "microd_tls_reloads_total ok %s, failed %s. Load meanwhile, both at once for %.1f s: "
              "`wrk -c%d` keep-alive and `wrk -c%d -H 'Connection: close'`."
              % (TLS_SWAPS, serial[0], serial[1], len(taken), len(waits), fmt_range(taken, "%.2f"),
                 reloads.get("ok", "?"), reloads.get("failed", "?"),
                 ka["requests"] / ka["rps"] if ka["rps"] else 0, TLS_ROTATION_CONNS, TLS_ROTATION_CONNS), "",
              "| during the %d swaps | done | failed |" % TLS_SWAPS, "|---|---|---|",
              "| keep-alive requests (wrk: socket errors + non-2xx) | %d | %d |" % (ka["requests"], ka_failed),
              "| new-connection handshakes (wrk connect errors) | %d | %d |"
              % (nc["requests"] + nc_hs_failed, nc_hs_failed),
              "| requests on those new connections (read/write/timeout + non-2xx) | %d | %d |"
              % (nc["requests"], nc_req_failed),
              "| verifying handshakes of the checker | %d | %d |" % (checks, failed),
              "", "Rotation target, 0 failed: %s. HTTPS part took %.0f s."
              % ("met" if total == 0 else "NOT met (%d)" % total, took)]
    return lines


def tls_main():
    """python3 tests/bench.py tls: only the HTTPS rows."""
    os.makedirs(OUT, exist_ok=True)
    print("\n".join(tls_bench()))
    return 0


def latency_main():
    """python3 tests/bench.py latency: only the table of blocked_latency()."""
    os.makedirs(OUT, exist_ok=True)
    print("\n".join(blocked_latency_lines(*blocked_latency())))
    return 0


def main():
    os.makedirs(OUT, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    idle_n = min(IDLE, hard - 200)
    echo_lua, echo_len = echo_script()
    conf = nginx_conf()
    servers = {
        "microd": microd_server(MICROD),
        "microd-nometrics": microd_server(NOMETRICS),
        "microd-poll": microd_server(MICROD, "--event-loop", "poll"),
        "nginx": Server("nginx", lambda p: ["nginx", "-e", "stderr", "-c", conf + ".run"],
                        prepare=lambda p: open(conf + ".run", "w").write(
                            open(conf).read().replace("@PORT@", str(p)))),
    }
    loads = [("keep-alive c=1", 1, []), ("keep-alive c=64", 64, []), ("keep-alive c=256", 256, []),
             ("new connection per request c=64", 64, ["-H", "Connection: close"])]
    res = {name: {} for name in servers}

    def add(name, key, val):
        res[name].setdefault(key, []).append(val)

    for rnd in range(ROUNDS):
        for name, srv in servers.items():
            if name == "microd-nometrics":
                continue
            add(name, "startup_ms", srv.start() * 1000)
            time.sleep(0.2)  # let start-up allocations settle before reading RSS
            add(name, "idle_rss", srv.rss_kib())
            add(name, "idle_anon", srv.rss_kib("RssAnon"))
            for label, c, extra in loads:
                if name == "microd-poll" and label not in ("keep-alive c=64", "keep-alive c=256"):
                    continue
                r = wrk(srv.port, c, extra=extra)
                add(name, label + " rps", r["rps"])
                add(name, label + " p50", r["p50"])
                add(name, label + " p99", r["p99"])
                add(name, label + " mean", r["mean"])
                add(name, label + " little", c / r["rps"] * 1000)
                if r["errors"]:
                    add(name, label + " errors", r["errors"])
            if name == "microd":
                r = wrk(srv.port, 64, "/echo", ["-s", echo_lua])
                add(name, "echo rps", r["rps"])
                add(name, "echo p99", r["p99"])
            srv.stop()
            print("round %d: %s done" % (rnd + 1, name), file=sys.stderr, flush=True)

    # Start-up (median of 20) and memory per idle connection, once each.
    for name in ("microd", "microd-poll", "nginx"):
        srv = servers[name]
        times = []
        for _ in range(20):
            times.append(srv.start() * 1000)
            srv.stop()
        res[name]["startup20"] = times
        srv.start()
        res[name]["per_conn"] = [idle_rss_per_conn(srv, idle_n)]
        srv.stop()

    # The per-connection memory pool against the largest request head it takes.
    pools = []
    for mem in ("4k", "6k", "8k", "10k", "16k"):
        srv = microd_server(MICROD, "--connection-memory", mem)
        srv.start()
        head = largest_header_block(srv.port)
        pools.append((mem, idle_rss_per_conn(srv, idle_n), head))
        srv.stop()
    print("pool sizes done", file=sys.stderr, flush=True)

    pair_ratios = paired(servers["microd"], servers["microd-nometrics"])
    print("metrics pairs done", file=sys.stderr, flush=True)
    before_ratios = None
    if os.path.exists(BEFORE):
        before_ratios = paired(servers["microd"], microd_server(BEFORE))
        print("before/after pairs done", file=sys.stderr, flush=True)
    else:
        print("%s missing (commit %s not in this clone?): /health against it skipped"
              % (os.path.relpath(BEFORE, ROOT), BEFORE_COMMIT), file=sys.stderr, flush=True)
    pregateway_ratios = None
    if os.path.exists(PREGATEWAY):
        pregateway_ratios = paired(servers["microd"], microd_server(PREGATEWAY))
        print("pre-gateway pairs done", file=sys.stderr, flush=True)
    latency = blocked_latency()
    checks_rps, checks_p99, _ = checks_paths()
    failing_rps, failing_p99, _ = checks_paths("/readyz")
    middleware = middleware_paths()
    sweeps = {}
    for threads in (1, os.cpu_count() or 1):
        for loop in ("poll", "epoll"):
            sweeps[(threads, loop)] = sweep(microd_server(MICROD, "--event-loop", loop, threads=threads))
    print("sweeps done", file=sys.stderr, flush=True)
    tls_section = tls_bench()
    notes_section = notes_bench()
    te_section = te_bench()
    otel_section = otel_bench()
    print("otel done", file=sys.stderr, flush=True)
    gateway = gateway_lines(gateway_bench())
    print("gateway done", file=sys.stderr, flush=True)

    stripped = os.path.join(OUT, "microd.stripped")
    shutil.copy(MICROD, stripped)
    subprocess.run(["strip", stripped], check=True)
    sizes = {"microd": os.path.getsize(stripped), "nginx": os.path.getsize(shutil.which("nginx"))}

    m, n = res["microd"], res["nginx"]

    def ratio(key, a=m, b=n):
        x, y = med(a.get(key, [])), med(b.get(key, []))
        return "%.2f" % (x / y) if x and y else "n/a"

    rows = []
    for label, _, _ in loads:
        rows.append(("%s req/s" % label, fmt_range(m[label + " rps"]), fmt_range(n[label + " rps"]),
                     ratio(label + " rps")))
        if "close" not in label:
            rows.append(("%s p50 / p99 ms" % label,
                         "%s / %s" % (fmt_range(m[label + " p50"], "%.2f"), fmt_range(m[label + " p99"], "%.2f")),
                         "%s / %s" % (fmt_range(n[label + " p50"], "%.2f"), fmt_range(n[label + " p99"], "%.2f")),
                         "%s / %s" % (ratio(label + " p50"), ratio(label + " p99"))))
    # With a closed loop, connections / req/s is the mean time a request
    # spends anywhere; wrk's mean counts only send to answer. The difference
    # is time spent queued inside wrk, which is not the server's latency.
    rows.append(("keep-alive c=64 mean latency by wrk / 64 connections / req/s, ms",
                 "%.3f / %.3f" % (med(m["keep-alive c=64 mean"]), med(m["keep-alive c=64 little"])),
                 "%.3f / %.3f" % (med(n["keep-alive c=64 mean"]), med(n["keep-alive c=64 little"])), ""))
    rows.append(("POST /echo %d-byte JSON c=64 req/s" % echo_len, fmt_range(m["echo rps"]), "n/a", "n/a"))
    rows.append(("POST /echo c=64 p99 ms", fmt_range(m["echo p99"], "%.2f"), "n/a", "n/a"))
    rows.append(("idle RSS after start, KiB", fmt_range(m["idle_rss"]), fmt_range(n["idle_rss"]),
                 ratio("idle_rss")))
    rows.append(("RSS per idle keep-alive connection (%d open), KiB" % idle_n,
                 "%.1f" % m["per_conn"][0], "%.1f" % n["per_conn"][0],
                 "%.2f" % (m["per_conn"][0] / n["per_conn"][0]) if n["per_conn"][0] > 0 else "n/a"))
    rows.append(("RSS per idle keep-alive connection with --event-loop poll, KiB",
                 "%.1f" % res["microd-poll"]["per_conn"][0], "", ""))
    rows.append(("idle RSS after start, private anonymous only, KiB", fmt_range(m["idle_anon"]),
                 fmt_range(n["idle_anon"]), ratio("idle_anon")))
    rows.append(("start-up, exec to first 200, ms (median of 20)", fmt_range(m["startup20"], "%.1f"),
                 fmt_range(n["startup20"], "%.1f"), ratio("startup20")))
    rows.append(("stripped binary, bytes", str(sizes["microd"]), str(sizes["nginx"]),
                 "%.2f" % (sizes["microd"] / sizes["nginx"])))
    rows.append(("keep-alive c=64 req/s, request metrics on / compiled out, %d alternating pairs of %d s "
                 "(microd only)" % (PAIRS, PAIR_SECONDS), "", "",
                 "with/without: %s" % fmt_range(pair_ratios, "%.3f")))
    label = ("keep-alive c=64 GET /health req/s, this build / commit %s (before the router and request "
             "view), %d alternating pairs of %d s (microd only); target: within 2%%" % (
                 BEFORE_COMMIT, PAIRS, PAIR_SECONDS))
    if before_ratios:
        rows.append((label, "", "", "new/old: %s; target %s" % (
            fmt_range(before_ratios, "%.3f"), "met" if med(before_ratios) >= 0.98 else "NOT met")))
    else:
        rows.append((label, "", "", "skipped: %s missing (commit %s not in this clone)" % (
            os.path.relpath(BEFORE, ROOT), BEFORE_COMMIT)))
    label = ("keep-alive c=64 GET /health req/s, none idle, this build / commit %s (poll, before the "
             "tickers), %d alternating pairs of %d s (microd only); target: no slower" % (
                 PREGATEWAY_COMMIT, PAIRS, PAIR_SECONDS))
    if pregateway_ratios:
        rows.append((label, "", "", "new/old: %s; target %s" % (
            fmt_range(pregateway_ratios, "%.3f"), "met" if med(pregateway_ratios) >= 1.0 else "NOT met")))
    else:
        rows.append((label, "", "", "skipped: %s missing" % os.path.relpath(PREGATEWAY, ROOT)))
    rows.append(("keep-alive c=64 GET /readyz?exclude=hangs with 5 checks (hangs times out on every run) / "
                 "GET /health, same server, %d alternating pairs of %d s (microd only)"
                 % (len(checks_rps), PAIR_SECONDS),
                 "", "", "req/s: %s; p99: %s" % (fmt_range(checks_rps, "%.3f"), fmt_range(checks_p99, "%.3f"))))
    rows.append(("the same, GET /readyz, which answers 503 while hangs fails / GET /health",
                 "", "", "req/s: %s; p99: %s" % (fmt_range(failing_rps, "%.3f"), fmt_range(failing_p99, "%.3f"))))
    rows += middleware_rows(middleware)
    if shutil.which("valgrind"):
        with_m, without_m = instructions_per_request(MICROD), instructions_per_request(NOMETRICS)
        rows.append(("instructions per GET /health (callgrind), with / without request metrics",
                     "%.0f / %.0f" % (with_m, without_m), "", "with/without: %.4f" % (with_m / without_m)))
        if os.path.exists(BEFORE):
            old_i = instructions_per_request(BEFORE)
            rows.append(("instructions per GET /health (callgrind), this build / commit %s" % BEFORE_COMMIT,
                         "%.0f / %.0f" % (with_m, old_i), "", "new/old: %.4f" % (with_m / old_i)))
        if os.path.exists(PREWINGS):
            old_i = instructions_per_request(PREWINGS)
            rows.append(("instructions per GET /health (callgrind), this build / commit %s, before the two "
                         "wings" % PREWINGS_COMMIT, "%.0f / %.0f" % (with_m, old_i), "",
                         "new/old: %.4f; target within 1%%: %s" % (
                             with_m / old_i, "met" if abs(with_m / old_i - 1) <= 0.01 else "NOT met")))
    e = res["microd-poll"]
    for label in ("keep-alive c=64", "keep-alive c=256"):
        rows.append(("%s req/s with --event-loop poll (microd only)" % label, fmt_range(e[label + " rps"]), "",
                     "poll/epoll: %.3f" % (med(e[label + " rps"]) / med(m[label + " rps"]))))
    errors = {k: v for name in res for k, v in res[name].items() if k.endswith("errors")}

    cpu = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read())
    machine = "%s, %d CPUs (%s), Linux %s, %s" % (
        platform.node(), os.cpu_count(), cpu.group(1) if cpu else "?", platform.release(),
        subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip())
    lines = ["# microd vs nginx-light (`make bench`)", "",
             "%s; %s" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), machine), "",
             "Server pinned to CPU 0 with one worker thread/process, wrk pinned to CPU 1%s; "
             "%d rounds of %d s per load, servers alternating; median (min-max)."
             % ("" if TWO_CPUS else " (only one CPU: not pinned)", ROUNDS, SECONDS), "",
             "| figure | microd | nginx | microd/nginx |", "|---|---|---|---|"]
    lines += ["| %s | %s | %s | %s |" % r for r in rows]
    counts = [c for c, _ in next(iter(sweeps.values()))]
    lines += ["", "microd req/s by keep-alive connection count (one %d s load each, server on CPU 0):" % SECONDS, "",
              "| threads, event loop | " + " | ".join("c=%d" % c for c in counts) + " |",
              "|---|" + "---|" * len(counts)]
    for (threads, loop), row in sweeps.items():
        lines.append("| %d, %s | %s |" % (threads, loop, " | ".join("%.0f" % r for _, r in row)))
    lines += ["", "microd's `--connection-memory` (default 10k) against what it costs and what it admits "
              "(%d idle keep-alive connections; request head = a browser's headers behind a proxy plus a "
              "Cookie grown until refused):" % idle_n, "",
              "| --connection-memory | RSS per idle connection, KiB | largest request head answered 200, bytes |",
              "|---|---|---|"]
    lines += ["| %s | %.1f | %d |" % p for p in pools]
    lines += [""] + gateway
    lines += [""] + blocked_latency_lines(*latency)
    lines += [""] + tls_section
    lines += [""] + notes_section
    lines += [""] + te_section
    lines += [""] + otel_section
    lines += ["", "Errors reported by wrk: %s" % (errors or "none"), "",
              "Commands: `%s` (keep-alive), plus `-H 'Connection: close'`, and `-s %s` for /echo; "
              "servers: `%s`, nginx with `%s`." % (
                  " ".join(LOAD_CPU + ["wrk", "-t1", "-cN", "-d%ds" % SECONDS, "--latency",
                                       "http://127.0.0.1:PORT/health"]),
                  os.path.relpath(echo_lua, ROOT),
                  "build/microd --bind 127.0.0.1 --threads 1 --log-level warn" + (
                      " on CPU 0 (affinity set by bench.py)" if TWO_CPUS else ""),
                  os.path.relpath(conf, ROOT)), "",
              "Start-up: the clock starts before the server's exec (nginx's config is written first) "
              "and stops at the first `200` to `GET /health` on a new connection.", ""]
    text = "\n".join(lines)
    open(os.path.join(OUT, "results.md"), "w").write(text)
    print(text)

    data = os.path.join(OUT, "results.dat")
    with open(data, "w") as f:
        for label, _, _ in loads:
            f.write('"%s" %f %f\n' % (label.replace("new connection per request", "conn/req"),
                                      med(m[label + " rps"]), med(n[label + " rps"])))
    if shutil.which("gnuplot"):
        subprocess.run(["gnuplot"], input="""set terminal svg size 800,420 font 'sans,12'
set output '%s'
set title 'GET /health req/s, one core each (median of %d rounds)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set ylabel 'requests per second'
set yrange [0:*]
set key top right
set grid ytics
plot '%s' using 2:xtic(1) title 'microd', '' using 3 title 'nginx-light'
""" % (os.path.join(OUT, "results.svg"), ROUNDS, data), text=True, check=True)
        print("\nchart: build/bench/results.svg")
    return 0

# The notes resource against the database's own ceiling: wrk at NOTES_CONNS
# connections on GET /notes/{id} and POST /notes, and pgbench running the
# same statement (its SQL read from src/app/statements.c) with as many
# connections, prepared, in the same run; a throw-away cluster of
# tests/pg.py holds NOTES_ROWS notes.
NOTES_CONNS = 64
# Handler threads and database connections of microd in the notes rows:
# fewer threads switch less, and the lanes pipeline the clients' statements.
NOTES_POOL = int(os.environ.get("BENCH_NOTES_POOL", "8"))
NOTES_ROWS = int(os.environ.get("BENCH_NOTES_ROWS", "10000"))


def statement_sql(name):
    """The SQL of statement name in src/app/statements.c: its adjacent
    string literals joined, NOTE_COLUMNS put in."""
    src = open(os.path.join(ROOT, "src/app/statements.c")).read()
    cols = re.search(r'#define NOTE_COLUMNS "([^"]*)"', src).group(1)
    row = re.search(r'\{"%s",\s*((?:"(?:[^"\\]|\\.)*"\s*|NOTE_COLUMNS\s*)+),' % name, src).group(1)
    return "".join(cols if tok == "NOTE_COLUMNS" else tok[1:-1]
                   for tok in re.findall(r'"(?:[^"\\]|\\.)*"|NOTE_COLUMNS', row))


def pgbench(pg, script, seconds, defines=(), conns=NOTES_CONNS, extra=()):
    """pgbench -M prepared at conns clients (NOTES_CONNS unless told) on the
    load CPU: (tps, p99 ms from its per-transaction log)."""
    d = tempfile.mkdtemp(prefix="microd-pgbench-")
    path = os.path.join(d, "script.sql")
    open(path, "w").write(script)
    cmd = LOAD_CPU + [os.path.join(pg.bin, "pgbench"), "-n", "-M", "prepared", "-c", str(conns)] + list(extra) \
        + ["-j", "2", "-T", str(seconds), "-f", path, "-l", "--log-prefix", os.path.join(d, "tx"),
                      "-h", pg.dir, "-p", str(pg.port), "-U", "microd"] \
        + [x for kv in defines for x in ("-D", kv)] + ["microd"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, env=env)
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out.stdout)
    lat = []
    for f in os.listdir(d):
        if f.startswith("tx"):
            with open(os.path.join(d, f)) as log:
                lat += [int(line.split()[2]) / 1000.0 for line in log if line.strip()]
    shutil.rmtree(d, ignore_errors=True)
    if not m:
        raise RuntimeError("pgbench: %s" % (out.stdout + out.stderr)[-500:])
    return float(m.group(1)), percentile(sorted(lat), 99) if lat else None


def notes_bench():
    """The notes rows of make bench: microd over pgbench for the by-id read
    and the insert, median of ROUNDS alternating runs, each p99 beside."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from pg import Cluster

    get_lua = os.path.join(OUT, "notes-get.lua")
    with open(get_lua, "w") as f:
        f.write('math.randomseed(os.time())\nrequest = function()\n'
                '  return wrk.format("GET", "/notes/" .. math.random(1, %d))\nend\n' % NOTES_ROWS)
    post_lua = os.path.join(OUT, "notes-post.lua")
    with open(post_lua, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = \'{"title":"bench","body":"b","tags":["a","b"]}\'\n'
                'wrk.headers["Content-Type"] = "application/json"\n')
    get_sql = statement_sql("notes_get")
    insert_sql = statement_sql("notes_insert")
    res = {k: [] for k in ("get microd", "get pgbench", "post microd", "post pgbench")}
    with Cluster() as pg:
        r = subprocess.run([MICROD, "migrate", "--database", pg.uri], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("microd migrate: %s" % r.stderr)
        pg.psql("insert into notes (title, body, tags) select 'note ' || g, repeat('x', 100), "
                "'{a,b}' from generate_series(1, %d) g" % NOTES_ROWS)
        pg.psql("vacuum analyze notes")
        srv = microd_server(MICROD, "--example-routes", "--database", pg.uri, "--database-pool",
                            str(NOTES_POOL), "--handler-threads", str(NOTES_POOL),
                            "--handler-queue", "1024")
        for rnd in range(ROUNDS):
            srv.start()
            deadline = time.monotonic() + 10  # the pool connects in the background
            while time.monotonic() < deadline and b"200 OK" not in http_get(srv.port, "/readyz", 1)[:20]:
                time.sleep(0.05)
            for key, path, lua in (("get", "/notes/1", get_lua), ("post", "/notes", post_lua)):
                w = wrk(srv.port, NOTES_CONNS, path, ["-s", lua])
                res[key + " microd"].append((w["rps"], w["p99"], w["non2xx"] + sum(w["socket"].values())))
            srv.stop()
            t, p99 = pgbench(pg, "\\set id random(1, %d)\n%s;\n" % (NOTES_ROWS, get_sql.replace("$1", ":id")),
                             SECONDS)
            res["get pgbench"].append((t, p99, 0))
            t, p99 = pgbench(pg, insert_sql.replace("$1", ":title").replace("$2", ":body")
                             .replace("$3", ":tags") + ";\n", SECONDS,
                             ["title=bench", "body=b", 'tags=["a","b"]'])
            res["post pgbench"].append((t, p99, 0))
            print("notes round %d done" % (rnd + 1), file=sys.stderr, flush=True)
    lines = ["`python3 tests/bench.py notes` (or `make bench`): the notes resource against PostgreSQL's own "
             "ceiling, %d connections each: wrk on microd (CPU 0, one I/O thread, --handler-threads %d, "
             "--database-pool %d: the lanes pipeline the 64 clients' statements) and pgbench -M prepared "
             "-c %d running the same statement "
             "(src/app/statements.c), alternating, %d rounds of %d s, median (min-max); %d notes, "
             "the database unpinned on the same machine." % (NOTES_CONNS, NOTES_POOL, NOTES_POOL,
                                                           NOTES_CONNS, ROUNDS, SECONDS, NOTES_ROWS), "",
             "| load | microd req/s | pgbench tps | microd/pgbench | microd p99 ms | pgbench p99 ms | "
             "microd errors |", "|---|---|---|---|---|---|---|"]
    for key, label in (("get", "GET /notes/{id} vs notes_get"), ("post", "POST /notes vs notes_insert")):
        a, b = res[key + " microd"], res[key + " pgbench"]
        lines.append("| %s | %s | %s | %.2f | %.2f | %.2f | %d |" % (
            label, fmt_range([x[0] for x in a]), fmt_range([x[0] for x in b]),
            med([x[0] for x in a]) / med([x[0] for x in b]), med([x[1] for x in a]),
            med([x[1] for x in b]), sum(x[2] for x in a)))
    return lines


def notes_main():
    """python3 tests/bench.py notes: only the notes rows."""
    os.makedirs(OUT, exist_ok=True)
    print("\n".join(notes_bench()))
    return 0


# The TechEmpower test types (src/app/world.c) as issue 27 sets them up: one
# microd thread on CPU 0, wrk -t1 on CPU 1, a pool of TE_POOL connections;
# /json against nginx answering the same bytes; /db, /queries?queries=20 and
# /updates?queries=20 at each of TE_CONNS connections against pgbench
# running the same statements (read from src/app/statements.c) with as many
# connections, in the same run; /queries?queries=20 with and without the
# pipeline (--database-pipeline off, when that option exists).
TE_POOL = 8
TE_CONNS = (64, 256)
TE_QUERIES = 20


def te_microd(uri, *extra):
    return microd_server(MICROD, "--example-routes", "--database", uri, "--database-pool", str(TE_POOL),
                         "--handler-threads", str(TE_POOL), "--handler-queue", "1024",
                         "--database-acquire-timeout", "5", *extra)


def te_start(srv):
    srv.start()
    deadline = time.monotonic() + 10  # the pool connects in the background
    while time.monotonic() < deadline and b"200 OK" not in http_get(srv.port, "/readyz", 1)[:20]:
        time.sleep(0.05)


def te_scripts():
    """pgbench's scripts: one world_get (as /db, and the unit of /queries),
    and TE_QUERIES world_get then one world_update (as /updates), its ids
    sorted and distinct in SQL as world.c sorts them in C."""
    get = statement_sql("world_get")
    update = statement_sql("world_update")
    one = "\\set id random(1, 10000)\n%s;\n" % get.replace("$1", ":id")
    ids = ",".join(":i%d" % k for k in range(TE_QUERIES))
    batch = "".join("\\set i%d random(1, 10000)\n\\set r%d random(1, 10000)\n" % (k, k)
                    for k in range(TE_QUERIES))
    batch += "".join("%s;\n" % get.replace("$1", ":i%d" % k) for k in range(TE_QUERIES))
    batch += update.replace("$1", "(SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(ARRAY[%s]) AS x)" % ids) \
        .replace("$2", "ARRAY[%s]" % ",".join(":r%d" % k for k in range(TE_QUERIES))) + ";\n"
    return one, batch


def te_bench():
    """The TechEmpower rows of make bench: (rows, notes)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from pg import Cluster

    conf = nginx_conf()
    nginx = Server("nginx", lambda p: ["nginx", "-e", "stderr", "-c", conf + ".run"],
                   prepare=lambda p: open(conf + ".run", "w").write(open(conf).read().replace("@PORT@", str(p))))
    one, batch = te_scripts()
    pipeline_opt = "--database-pipeline" in subprocess.run([MICROD, "--help"], capture_output=True,
                                                           text=True).stdout
    res = {}

    def add(key, val):
        res.setdefault(key, []).append(val)

    with Cluster() as pg:
        # 256 clients and the pool beside them: past the default 100.
        pg.psql("alter system set max_connections = 400")
        pg.stop()
        pg.start()
        r = subprocess.run([MICROD, "migrate", "--database", pg.uri], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("microd migrate: %s" % r.stderr)
        pg.psql("vacuum analyze world")
        srv = te_microd(pg.uri)
        off = te_microd(pg.uri, "--database-pipeline", "off") if pipeline_opt else None
        q = "/queries?queries=%d" % TE_QUERIES
        for rnd in range(ROUNDS):
            for name, s in (("microd", srv), ("nginx", nginx)):
                s.start()
                add("json " + name, wrk(s.port, 64, "/json"))
                s.stop()
            te_start(srv)
            for c in TE_CONNS:
                for key, path in (("db", "/db"), ("queries", q), ("updates", "/updates?queries=%d" % TE_QUERIES)):
                    add("%s %d" % (key, c), wrk(srv.port, c, path))
            srv.stop()
            if off:
                te_start(off)
                add("queries off", wrk(off.port, 64, q))
                off.stop()
            for c in TE_CONNS:
                add("pgbench one %d" % c, pgbench(pg, one, SECONDS, conns=c))
                add("pgbench batch %d" % c, pgbench(pg, batch, SECONDS, conns=c))
            print("te round %d done" % (rnd + 1), file=sys.stderr, flush=True)

    def rps(key):
        return med([w["rps"] for w in res[key]])

    def errs(key):
        return sum(w["non2xx"] + sum(w["socket"].values()) for w in res[key])

    lines = ["`python3 tests/bench.py te` (or `make bench`): the TechEmpower test types (issue 27). microd "
             "on CPU 0 (`--threads 1 --example-routes --database-pool %d --handler-threads %d "
             "--handler-queue 1024 --database-acquire-timeout 5`), `wrk -t1` on CPU 1; pgbench -M prepared "
             "with as many connections running the same statements (src/app/statements.c: one world_get; "
             "%d world_get and one world_update), the database unpinned; %d rounds of %d s, median."
             % (TE_POOL, TE_POOL, TE_QUERIES, ROUNDS, SECONDS), "",
             "| load | microd req/s | reference | ratio | target | microd p99 ms | errors |",
             "|---|---|---|---|---|---|---|"]
    j, n = rps("json microd"), rps("json nginx")
    lines.append("| GET /json c=64 vs nginx `return 200` | %.0f | %.0f | %.2f | | %.2f | %d |" % (
        j, n, j / n, med([w["p99"] for w in res["json microd"]]), errs("json microd")))
    for c in TE_CONNS:
        one_tps = med([t for t, _ in res["pgbench one %d" % c]])
        batch_tps = med([t for t, _ in res["pgbench batch %d" % c]])
        d, qq, u = rps("db %d" % c), rps("queries %d" % c), rps("updates %d" % c)
        dp99 = med([w["p99"] for w in res["db %d" % c]])
        lines.append("| GET /db c=%d ÷ pgbench world_get | %.0f | %.0f tps | %.2f | ≥ 1.0: %s | %.2f "
                     "(≤ 2 ms: %s) | %d |" % (c, d, one_tps, d / one_tps, "met" if d >= one_tps else "NOT met",
                                               dp99, "met" if dp99 is not None and dp99 <= 2 else "NOT met",
                                               errs("db %d" % c)))
        lines.append("| GET /queries?queries=%d c=%d × %d ÷ pgbench world_get | %.0f | %.0f tps | %.2f | "
                     "≥ 2.5: %s | %.2f | %d |" % (
                         TE_QUERIES, c, TE_QUERIES, qq, one_tps, qq * TE_QUERIES / one_tps,
                         "met" if qq * TE_QUERIES >= 2.5 * one_tps else "NOT met",
                         med([w["p99"] for w in res["queries %d" % c]]), errs("queries %d" % c)))
        lines.append("| GET /updates?queries=%d c=%d ÷ pgbench (%d world_get + world_update) | %.0f | %.0f tps "
                     "| %.2f | reported | %.2f | %d |" % (
                         TE_QUERIES, c, TE_QUERIES, u, batch_tps, u / batch_tps,
                         med([w["p99"] for w in res["updates %d" % c]]), errs("updates %d" % c)))
    if off:
        o, w = rps("queries off"), rps("queries 64")
        lines += ["", "The pipeline's effect, GET /queries?queries=%d at c=64: with %.0f req/s, without "
                  "(--database-pipeline off) %.0f req/s: %.2f times." % (TE_QUERIES, w, o, w / o)]
    else:
        lines += ["", "The pipeline's effect, GET /queries?queries=%d at c=64: with %.0f req/s; "
                  "without: option missing (microd --help lists no --database-pipeline)."
                  % (TE_QUERIES, rps("queries 64"))]
    return lines


def te_main():
    """python3 tests/bench.py te: only the TechEmpower rows."""
    os.makedirs(OUT, exist_ok=True)
    text = "\n".join(te_bench())
    open(os.path.join(OUT, "te.md"), "w").write(text + "\n")
    print(text)
    return 0


# Traces (issue 28): GET /health with export on (OTLP/HTTP JSON to the
# decoding receiver of tests/otel.py on loopback) against export off, in the
# same run: to a receiver that answers at once, to one that decodes every
# body (node on the same CPUs: its cost shows too), then black-holed (it
# takes each POST and never answers). --log-probes on both, so /health is traced. The
# requirement: req/s at least 0.95 times, p99 at most 1.1 times.
OTLP_RECEIVER = os.path.join(ROOT, "tests/otlp/receiver.js")
OTLP_MODULES = os.path.join(ROOT, "build/otlp/node_modules")


def otel_bench():
    if not os.path.isdir(OTLP_MODULES) or shutil.which("node") is None:
        return ["Traces: not measured (make otlp-deps installs the receiver's packages)."]
    # The receiver on the load's CPU, as wrk: CPU 0 is microd's alone, so
    # what the ratio shows is what exporting costs microd.
    rcv = subprocess.Popen(LOAD_CPU + ["node", OTLP_RECEIVER, OTLP_MODULES], stdout=subprocess.PIPE,
                           text=True)
    port = int(rcv.stdout.readline().split()[1])
    endpoint = "http://127.0.0.1:%d" % port

    def control(mode):
        req = urllib.request.Request(endpoint + "/control", data=json.dumps({"mode": mode}).encode())
        urllib.request.urlopen(req, timeout=10).read()

    def server(on, path, extra):
        env = ["env", "OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint] if on else ["env", "-u",
                                                                            "OTEL_EXPORTER_OTLP_ENDPOINT"]
        return Server("microd-otel-%s%s" % ("on" if on else "off", path.replace("/", "-")),
                      lambda p: env + [MICROD, "--bind", "127.0.0.1", "--port", str(p), "--threads", "1",
                                       "--log-level", "warn"] + extra)

    def ready(srv):
        deadline = time.monotonic() + 10  # a database pool connects in the background
        while time.monotonic() < deadline and b"200 OK" not in http_get(srv.port, "/readyz", 1)[:20]:
            time.sleep(0.05)

    lines = ["Traces: export on / export off, c=64, %d rounds of %d s alternating; median (min-max). "
             "GET /health traced with --log-probes (a span a request, at the rate of a route that does "
             "nothing); GET /db (a SERVER span and a CLIENT span a request) with --example-routes, "
             "--database (tests/pg.py's cluster), --database-pool 8. The receiver (node) on CPU 1 "
             "with wrk:" % (ROUNDS, SECONDS), "",
             "| route | receiver | req/s on | req/s off | ratio (>= 0.95) | p99 ms on | p99 ms off | "
             "ratio (<= 1.1) |",
             "|---|---|---|---|---|---|---|---|"]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from pg import Cluster
    try:
        with Cluster() as pg:
            r = subprocess.run([MICROD, "migrate", "--database", pg.uri], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("microd migrate: %s" % r.stderr)
            cases = [("/health", ["--log-probes"], (("sink", "answering 200, on loopback"),
                                                      ("ok", "decoding each body"),
                                                      ("never", "black-holed"))),
                     ("/db", ["--example-routes", "--database", pg.uri, "--database-pool", "8"],
                      (("sink", "answering 200, on loopback"), ("never", "black-holed")))]
            for path, extra, modes in cases:
                for mode, label in modes:
                    control(mode)
                    on, off = server(True, path, extra), server(False, path, extra)
                    got = {"on": [], "off": []}
                    on.start()
                    off.start()
                    ready(on)
                    ready(off)
                    try:
                        for rnd in range(ROUNDS):
                            for name, srv in ((("on", on), ("off", off)) if rnd % 2 == 0
                                              else (("off", off), ("on", on))):
                                got[name].append(wrk(srv.port, 64, path))
                    finally:
                        on.stop()
                        off.stop()
                    rps = {k: [r["rps"] for r in v] for k, v in got.items()}
                    p99 = {k: [r["p99"] for r in v] for k, v in got.items()}
                    rr, pr = med(rps["on"]) / med(rps["off"]), med(p99["on"]) / med(p99["off"])
                    lines.append("| GET %s | %s | %s | %s | %.3f %s | %s | %s | %.2f %s |" % (
                        path, label, fmt_range(rps["on"]), fmt_range(rps["off"]), rr,
                        "met" if rr >= 0.95 else "NOT met", fmt_range(p99["on"], "%.2f"),
                        fmt_range(p99["off"], "%.2f"), pr, "met" if pr <= 1.1 else "NOT met"))
    finally:
        rcv.send_signal(signal.SIGTERM)
        rcv.wait(timeout=10)
    return lines


def otel_main():
    """python3 tests/bench.py otel: only the traces rows."""
    os.makedirs(OUT, exist_ok=True)
    print("\n".join(otel_bench()))
    return 0


def ab_main(argv):
    """python3 tests/bench.py ab CONNS CMD_A... -- CMD_B...: how a change pays,
    as req/s of A over B in BENCH_PAIRS alternating pairs; PORT in a command
    stands for the port. Both servers start pinned like the main run."""
    conns, rest = int(argv[0]), argv[1:]
    cut = rest.index("--")
    a, b = rest[:cut], rest[cut + 1:]

    def server(cmd):
        return Server(cmd[0], lambda p: [arg.replace("PORT", str(p)) for arg in cmd])

    ratios = paired(server(a), server(b), conns)
    print("A/B req/s at c=%d, %d pairs of %d s: %s; median %.3f" % (
        conns, PAIRS, PAIR_SECONDS, " ".join("%.3f" % r for r in ratios), statistics.median(ratios)))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["ab"]:
        raise SystemExit(ab_main(sys.argv[2:]))
    if sys.argv[1:2] == ["gateway"]:
        raise SystemExit(gateway_main())
    if sys.argv[1:2] == ["load"]:
        raise SystemExit(load_main(sys.argv[2:]))
    if sys.argv[1:2] == ["latency"]:
        raise SystemExit(latency_main())
    if sys.argv[1:2] == ["checks"]:
        raise SystemExit(checks_main())
    if sys.argv[1:2] == ["tls"]:
        raise SystemExit(tls_main())
    if sys.argv[1:2] == ["notes"]:
        raise SystemExit(notes_main())
    if sys.argv[1:2] == ["te"]:
        raise SystemExit(te_main())
    if sys.argv[1:2] == ["otel"]:
        raise SystemExit(otel_main())
    if sys.argv[1:2] == ["middleware"]:
        raise SystemExit(middleware_main())
    raise SystemExit(main())
