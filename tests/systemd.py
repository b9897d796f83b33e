#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# systemd.py -- microd against systemd's real protocols (TAP)
#
# Real peers, no mocks: a unix datagram socket bound here is the
# NOTIFY_SOCKET; systemd-socket-activate passes listening sockets; the units
# go through systemd-analyze verify and security; make install runs into a
# staging directory.
#
# The watchdog test wedges the worker pool as a stuck handler would: the test
# build's GET /test/block holds a worker thread for a given time, and every
# request through that worker, the watchdog's own GET /health included,
# stops being answered.
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

from server import free_port, wait_exit
from tap import done, ok, skip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.abspath(os.environ.get("MICROD_BIN", "build/microd"))
# The same build with test hooks (GET /test/block), made by make test-progs.
HOOKS_BIN = os.path.abspath(os.environ.get("MICROD_HOOKS_BIN", os.path.join(os.path.dirname(BIN), "hooks/microd")))




class Notify:
    """A NOTIFY_SOCKET: a unix datagram socket at a path or abstract name."""

    def __init__(self, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            self.name = "@microd-test-%d-%d" % (os.getpid(), time.monotonic_ns())
            self.sock.bind("\0" + self.name[1:])
            self.path = None
        else:
            self.dir = tempfile.mkdtemp(prefix="microd-notify-")
            self.path = self.name = os.path.join(self.dir, "notify")
            self.sock.bind(self.path)

    def recv(self, timeout):
        """The next message as a dict (with the time it arrived), or None."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096).decode()
        except socket.timeout:
            return None
        msg = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
        msg["_t"] = time.monotonic()
        return msg

    def wait_for(self, key, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.recv(deadline - time.monotonic())
            if m is not None and key in m:
                return m
        return None

    def collect(self, seconds):
        out, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            m = self.recv(deadline - time.monotonic())
            if m is not None:
                out.append(m)
        return out

    def close(self):
        self.sock.close()
        if self.path:
            shutil.rmtree(self.dir)


def env_with(**kv):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NOTIFY_", "WATCHDOG_", "LISTEN_", "JOURNAL_"))}
    env.update(kv)
    return env


def http_get(port, path, timeout=5, host="127.0.0.1"):
    return http_status_why(port, path, timeout, host)[0]


def http_status_why(port, path, timeout=5, host="127.0.0.1"):
    """(status or None, what went wrong) for one GET on a new connection."""
    url = "http://%s:%d%s" % ("[%s]" % host if ":" in host else host, port, path)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, ""
    except urllib.error.HTTPError as e:
        return e.code, "HTTP error"
    except OSError as e:
        return None, repr(e)


def unix_get(path, target):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(path)
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target).encode())
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
        return data.decode(errors="replace")
    except OSError:
        return ""
    finally:
        s.close()


def port_of(status):
    m = re.search(r":(\d+),", status or "")
    return int(m.group(1)) if m else None


def stop(proc, timeout=15):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return wait_exit(proc, timeout)


def test_notify():
    n = Notify()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([BIN, "--bind", "127.0.0.1", "--port", "0", "--threads", "3",
                             "--drain-delay", "0.3"],
                            env=env_with(NOTIFY_SOCKET=n.name), stderr=log)
    ready = n.wait_for("READY", 10)
    port = port_of(ready.get("STATUS") if ready else None)
    # Asked the instant READY=1 arrives: it must already be true.
    ok(port is not None and http_get(port, "/health") == 200,
       "READY=1 arrives only once the port answers /health")
    ok(ready is not None and re.fullmatch(r"serving on 127\.0\.0\.1:\d+, 3 threads", ready.get("STATUS", "")),
       "STATUS= gives address, port and threads: %s" % (ready or {}).get("STATUS"))
    proc.send_signal(signal.SIGTERM)
    msgs = n.collect(0.6)
    stopping = [m for m in msgs if "STOPPING" in m]
    ok(stopping and stopping[0]["STOPPING"] == "1" and stopping[0].get("STATUS", "").startswith("draining"),
       "SIGTERM sends STOPPING=1 with STATUS=draining...")
    ext = [int(m["EXTEND_TIMEOUT_USEC"]) for m in msgs if "EXTEND_TIMEOUT_USEC" in m]
    ok(len(ext) >= 1 and all(v > 0 for v in ext),
       "and EXTEND_TIMEOUT_USEC while the drain goes on (%d messages)" % len(ext))
    ok(stop(proc) == 0, "and exits 0")
    n.close()

    n = Notify(abstract=True)
    proc = subprocess.Popen([BIN, "--bind", "127.0.0.1", "--port", "0"],
                            env=env_with(NOTIFY_SOCKET=n.name), stderr=log)
    ready = n.wait_for("READY", 10)
    ok(ready is not None and http_get(port_of(ready.get("STATUS")) or 0, "/ready") == 200,
       "an abstract @ NOTIFY_SOCKET works too")
    stop(proc)
    n.close()

    # Startup fails (the port is taken): no READY=1 may be sent.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    n = Notify()
    proc = subprocess.Popen([BIN, "--bind", "127.0.0.1", "--port", str(holder.getsockname()[1])],
                            env=env_with(NOTIFY_SOCKET=n.name), stderr=log)
    status = proc.wait(timeout=10)
    ok(status == 1 and n.recv(0.2) is None, "a failed start exits 1 and never sends READY=1")
    n.close()
    holder.close()

    proc = subprocess.run([BIN, "--port", "0"], env=env_with(NOTIFY_SOCKET="relative/path"),
                          capture_output=True, text=True, timeout=10)
    ok(proc.returncode == 1 and "NOTIFY_SOCKET" in proc.stderr,
       "a malformed NOTIFY_SOCKET is refused with a message")
    log.close()


def pings(msgs):
    return [m["_t"] for m in msgs if m.get("WATCHDOG") == "1"]


def test_watchdog():
    n = Notify()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([BIN, "--bind", "127.0.0.1", "--port", "0"],
                            env=env_with(NOTIFY_SOCKET=n.name, WATCHDOG_USEC="400000"), stderr=log)
    ok(n.wait_for("READY", 10) is not None, "watchdog: READY=1")
    times = pings(n.collect(2.0))
    gaps = [b - a for a, b in zip(times, times[1:])]
    ok(7 <= len(times) <= 13, "WATCHDOG=1 about every 200 ms for a 400 ms interval (%d in 2 s)" % len(times))
    ok(gaps and max(gaps) < 0.4, "never a gap as long as the interval (longest %.0f ms)"
       % (max(gaps) * 1000 if gaps else -1))
    stop(proc)
    log.seek(0)
    ok(b'"level":"warn"' not in log.read(), "the self-check logs no warnings")
    log.close()

    proc = subprocess.Popen([BIN, "--bind", "127.0.0.1", "--port", "0"],
                            env=env_with(NOTIFY_SOCKET=n.name, WATCHDOG_USEC="200000", WATCHDOG_PID="1"),
                            stderr=subprocess.DEVNULL)
    ok(n.wait_for("READY", 10) is not None and not pings(n.collect(0.6)),
       "no pings when WATCHDOG_PID names another process")
    stop(proc)

    # Wedge the pool: the test build's GET /test/block holds its worker (the
    # only one) for 3 s, as a handler stuck in a blocking call would.
    proc = subprocess.Popen([HOOKS_BIN, "--bind", "127.0.0.1", "--port", "0", "--threads", "1"],
                            env=env_with(NOTIFY_SOCKET=n.name, WATCHDOG_USEC="400000"), stderr=subprocess.DEVNULL)
    ready = n.wait_for("READY", 10)
    port = port_of(ready.get("STATUS") if ready else None)
    ok(port is not None and pings(n.collect(0.5)), "pings flow while the pool answers")
    blocked = {}
    th = threading.Thread(target=lambda: blocked.setdefault("st", http_get(port, "/test/block?ms=3000", 10)))
    th.start()
    n.collect(0.5)  # pings already on their way
    silent = pings(n.collect(1.6))
    ok(not silent, "no WATCHDOG=1 for 1.6 s (4 intervals) while the only worker is blocked (%d seen)" % len(silent))
    again = n.wait_for("WATCHDOG", 5)
    th.join(10)
    ok(again is not None and blocked.get("st") == 200, "pings resume once the worker answers again")
    ok(stop(proc) == 0, "and it still stops cleanly")

    # Four workers, one of them blocked: every worker is checked, so the
    # pings stop within one interval whichever worker the block landed on.
    proc = subprocess.Popen([HOOKS_BIN, "--bind", "127.0.0.1", "--port", "0", "--threads", "4"],
                            env=env_with(NOTIFY_SOCKET=n.name, WATCHDOG_USEC="400000"), stderr=subprocess.DEVNULL)
    ready = n.wait_for("READY", 10)
    port = port_of(ready.get("STATUS") if ready else None)
    ok(port is not None and pings(n.collect(0.5)), "4 threads: pings flow while every worker answers")
    th = threading.Thread(target=lambda: blocked.setdefault("st4", http_get(port, "/test/block?ms=3000", 10)))
    th.start()
    n.collect(0.4)  # one interval: a ping may be on its way
    silent = pings(n.collect(1.6))
    ok(not silent, "one of 4 workers blocked: no WATCHDOG=1 for 1.6 s after one interval (%d seen)" % len(silent))
    th.join(10)
    ok(n.wait_for("WATCHDOG", 5) is not None and blocked.get("st4") == 200, "pings resume once it answers")
    ok(stop(proc) == 0, "and it stops cleanly")

    # A worker that stalls for several intervals while the pool is at its
    # limit: each check stays the only one outstanding on it, so when it
    # wakes it is not handed a pile of them (0.9.75 deadlocks a worker
    # handed a connection at its limit), and it still stops cleanly.
    proc = subprocess.Popen([HOOKS_BIN, "--bind", "127.0.0.1", "--port", "0", "--threads", "2",
                             "--connection-limit", "2"],
                            env=env_with(NOTIFY_SOCKET=n.name, WATCHDOG_USEC="200000"), stderr=subprocess.DEVNULL)
    ready = n.wait_for("READY", 10)
    port = port_of(ready.get("STATUS") if ready else None)
    th = threading.Thread(target=lambda: blocked.setdefault("st2", http_get(port, "/test/block?ms=1500", 10)))
    th.start()
    n.collect(0.2)
    silent = pings(n.collect(1.0))
    th.join(10)
    ok(not silent and n.wait_for("WATCHDOG", 5) is not None and blocked.get("st2") == 200,
       "a worker blocked for 7 intervals at the connection limit: no pings (%d), then they resume" % len(silent))
    ok(stop(proc) == 0, "and it stops cleanly (no worker deadlocked by piled-up checks)")

    # A full pool is busy, not wedged: with the connection limit taken by
    # clients in a request (their bodies still to come) the self-check is
    # refused, and the pings go on.
    log = tempfile.NamedTemporaryFile(prefix="microd-wd-", delete=False)
    proc = subprocess.Popen([BIN, "--bind", "127.0.0.1", "--port", "0", "--threads", "2", "--connection-limit", "2"],
                            env=env_with(NOTIFY_SOCKET=n.name, WATCHDOG_USEC="400000"), stderr=log)
    ready = n.wait_for("READY", 10)
    port = port_of(ready.get("STATUS") if ready else None)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)] if port else []
    heads_in = 0
    for c in idle:
        c.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        heads_in += c.recv(4096).startswith(b"HTTP/1.1 100 ")
    # A third client is refused: closed at once, with nothing sent.
    deadline = time.monotonic() + 5
    refused = full = False
    while time.monotonic() < deadline and not full:
        try:
            extra = socket.create_connection(("127.0.0.1", port), timeout=2)
            extra.settimeout(2)
            refused = extra.recv(1) == b""
            extra.close()
        except OSError:
            refused = True
        with open(log.name) as f:
            full = "the pool is at its connection limit" in f.read()
        time.sleep(0.05)  # paces the attempts; not a synchronisation
    ok(heads_in == 2 and refused and full,
       "connection limit 2 held by 2 clients in a request (%d): a third is refused, and the watchdog says so"
       % heads_in)
    got = pings(n.collect(2.0))
    ok(len(got) >= 7, "and WATCHDOG=1 goes on: %d pings in 2 s at a 400 ms interval" % len(got))
    for c in idle:
        c.close()
    ok(stop(proc) == 0, "and it stops cleanly")
    with open(log.name) as f:
        text = f.read()
    os.unlink(log.name)
    ok("did not answer" not in text, "no check counted as failed while the pool was full")
    n.close()


def ipv6_works():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def activate(listen, trigger, fdname="http"):
    """microd under systemd-socket-activate, which execs it on the first
    connection: trigger() makes that connection (its result is returned)
    before READY=1 is awaited. Returns (proc, trigger's result, READY)."""
    n = Notify()
    cmd = ["systemd-socket-activate", "-l", listen] + (["--fdname=" + fdname] if fdname else []) \
        + ["-E", "NOTIFY_SOCKET=" + n.name, BIN]
    proc = subprocess.Popen(cmd, env=env_with(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    path = listen if listen.startswith("/") else None
    # systemd-socket-activate binds before it logs; wait for the socket.
    while time.monotonic() < deadline and proc.poll() is None:
        if path is not None and os.path.exists(path):
            break
        if path is None and subprocess.run(["ss", "-Hltn", "sport = :" + listen.rsplit(":", 1)[1]],
                                           capture_output=True, text=True).stdout.strip():
            break
        time.sleep(0.01)
    result = trigger()
    ready = n.wait_for("READY", 10)
    n.close()
    return proc, result, ready


def test_activation():
    if shutil.which("systemd-socket-activate") is None:
        skip("systemd-socket-activate is not installed", 6)
        return
    port = free_port()
    proc, st, ready = activate("127.0.0.1:%d" % port, lambda: http_get(port, "/health"))
    ok(st == 200, "socket activation on IPv4 127.0.0.1:%d serves /health" % port)
    ok(ready is not None and ready.get("STATUS", "").startswith("serving on 127.0.0.1:%d" % port),
       "STATUS names the passed socket: %s" % (ready or {}).get("STATUS"))
    ok(stop(proc) == 0, "and a stop there exits 0")

    if ipv6_works():
        port = free_port(socket.AF_INET6, "::1")
        proc, st, ready = activate("[::1]:%d" % port, lambda: http_get(port, "/health", host="::1"),
                                   fdname=None)
        ok(st == 200, "on IPv6 [::1]:%d, with no LISTEN_FDNAMES" % port)
        stop(proc)
    else:
        skip("no IPv6 loopback here")

    d = tempfile.mkdtemp(prefix="microd-sock-")
    path = os.path.join(d, "http.sock")
    proc, reply, ready = activate(path, lambda: unix_get(path, "/health"))
    ok(reply.startswith("HTTP/1.1 200 ") and reply.endswith('{"status":"ok"}\n'),
       "on a unix stream socket")
    ok(ready is not None and ready.get("STATUS", "").startswith("serving on unix:" + path),
       "STATUS names the unix path: %s" % (ready or {}).get("STATUS"))
    stop(proc)
    shutil.rmtree(d)

    port = free_port()
    proc, st, ready = activate("127.0.0.1:%d" % port, lambda: http_get(port, "/health", timeout=3),
                               fdname="metrics")
    status = proc.wait(timeout=10)
    err = proc.stderr.read()
    ok(ready is None and st is None and status == 1 and "no 'http' socket" in err,
       "a socket named other than http is refused: exit %s" % status)


def test_restart_under_load():
    """The test holds the listening socket, as systemd does, and restarts
    microd under load: connections made while no microd runs wait in the
    backlog, and not one request fails."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4096)
    port = lsock.getsockname()[1]
    fd = lsock.fileno()

    def start():
        def child():
            if fd == 3:
                os.set_inheritable(3, True)  # dup2(3, 3) would keep CLOEXEC
            else:
                os.dup2(fd, 3)
        n = Notify()
        proc = subprocess.Popen(["sh", "-c", 'export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=http; exec "$0" "$@"',
                                 BIN, "--shutdown-timeout", "5"],
                                env=env_with(NOTIFY_SOCKET=n.name),
                                preexec_fn=child, close_fds=False, stderr=subprocess.DEVNULL)
        ready = n.wait_for("READY", 10)
        n.close()
        return proc, ready is not None

    first, up1 = start()
    stop_load = threading.Event()
    results = {"ok": 0, "failed": 0}
    failures = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def load():
        while not stop_load.is_set():
            started = time.monotonic()
            st, why = http_status_why(port, "/health", timeout=10)
            with lock:
                results["ok" if st == 200 else "failed"] += 1
                if st != 200:
                    failures.append("%s (%s) sent at %.3f s, ended at %.3f s" % (
                        st, why, started - t0, time.monotonic() - t0))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    def wait_ok(n, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and results["ok"] < n:
            time.sleep(0.005)

    wait_ok(100)  # the load runs before the restart
    before = results["ok"]
    first.send_signal(signal.SIGTERM)
    sigterm_at = time.monotonic() - t0
    st1 = first.wait(timeout=15)
    exited_at = time.monotonic() - t0
    second, up2 = start()
    ready_at = time.monotonic() - t0
    wait_ok(before + 200)  # and after it, on the new instance
    stop_load.set()
    for t in threads:
        t.join(timeout=15)
    after = results["ok"] - before
    ok(up1 and up2 and st1 == 0, "two instances in turn on one held socket")
    if not ok(results["failed"] == 0 and before >= 100 and after >= 200,
              "a restart under load loses no request (%d ok before the restart, %d after, %d failed)"
              % (before, after, results["failed"])):
        print("# SIGTERM at %.3f s, first exited at %.3f s, second ready at %.3f s" % (sigterm_at, exited_at, ready_at))
        for f in failures:
            print("# failed: " + f)
    stop(second)
    lsock.close()


def test_units():
    unit = os.path.join(ROOT, "dist/microd.service")
    sock = os.path.join(ROOT, "dist/microd.socket")
    text = open(unit).read()
    for want in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "DynamicUser=yes",
                 "PrivateNetwork=yes", "RestrictAddressFamilies=AF_UNIX", "LimitNOFILE=",
                 "EnvironmentFile=-/etc/default/microd"):
        ok(re.search("^" + re.escape(want), text, re.M) is not None, "microd.service has %s" % want)
    stext = open(sock).read()
    ok(re.search(r"^FileDescriptorName=http$", stext, re.M) and re.search(r"^ListenStream=8080$", stext, re.M),
       "microd.socket: ListenStream=8080, FileDescriptorName=http")
    sec = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=5", unit],
                         capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", sec.stdout)
    ok(sec.returncode == 0 and m and float(m.group(1)) <= 0.5,
       "systemd-analyze security --offline=yes --threshold=5: %s" % (m.group(1) if m else sec.stderr.strip()))

    stage = tempfile.mkdtemp(prefix="microd-install-")
    try:
        # Installed under a prefix of its own, so ExecStart= and the man page
        # named in Documentation= exist for verify.
        prefix = os.path.join(stage, "prefix")
        units = os.path.join(stage, "units")
        r = subprocess.run(["make", "-s", "-C", ROOT, "install", "PREFIX=" + prefix, "UNITDIR=" + units],
                           capture_output=True, text=True)
        ok(r.returncode == 0, "make install PREFIX=... UNITDIR=...%s" % r.stderr.strip())
        v = subprocess.run(["systemd-analyze", "verify", os.path.join(units, "microd.socket"),
                            os.path.join(units, "microd.service")],
                           env=dict(os.environ, MANPATH=os.path.join(prefix, "share/man")),
                           capture_output=True, text=True)
        ok(v.returncode == 0 and v.stderr.strip() == "",
           "systemd-analyze verify passes on both units%s" % (": " + v.stderr.strip() if v.stderr.strip() else ""))
        installed = open(os.path.join(units, "microd.service")).read()
        ok("ExecStart=%s/bin/microd\n" % prefix in installed, "ExecStart= points at the installed binary")

        dest = os.path.join(stage, "dest")
        r = subprocess.run(["make", "-s", "-C", ROOT, "install", "DESTDIR=" + dest],
                           capture_output=True, text=True)
        files = sorted(os.path.relpath(os.path.join(d, f), dest)
                       for d, _, fs in os.walk(dest) for f in fs)
        unitdir = subprocess.run(["pkg-config", "--variable=systemdsystemunitdir", "systemd"],
                                 capture_output=True, text=True).stdout.strip() or "/usr/local/lib/systemd/system"
        want = sorted(p.lstrip("/") for p in ("/usr/local/bin/microd", unitdir + "/microd.service",
                                              unitdir + "/microd.socket", "/usr/local/share/man/man8/microd.8"))
        ok(r.returncode == 0 and files == want,
           "make install DESTDIR= installs exactly: %s" % " ".join(files))
        r = subprocess.run(["make", "-s", "-C", ROOT, "uninstall", "DESTDIR=" + dest],
                           capture_output=True, text=True)
        left = [f for d, _, fs in os.walk(dest) for f in fs]
        ok(r.returncode == 0 and not left, "make uninstall removes them all%s" % (": " + " ".join(left) if left else ""))
        man = subprocess.run(["man", "-l", "-P", "cat", os.path.join(ROOT, "dist/microd.8")],
                             capture_output=True, text=True, env=dict(os.environ, MANWIDTH="80"))
        ok(man.returncode == 0 and "--shutdown-timeout" in man.stdout.replace("\u2010", "-")
           and "EXIT STATUS" in man.stdout, "microd.8 renders with flags and exit status")
    finally:
        shutil.rmtree(stage)


def test_journal():
    """JOURNAL_STREAM naming stderr: <N> priority prefixes, no timestamps."""
    with tempfile.NamedTemporaryFile() as log:
        st = os.fstat(log.fileno())
        proc = subprocess.Popen([BIN, "--bind", "127.0.0.1", "--port", "0"],
                                env=env_with(JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino)),
                                stderr=log)
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline and "ready" not in text:
            text = open(log.name).read()
            time.sleep(0.01)
        stop(proc)
        lines = open(log.name).read().splitlines()
    ok(lines and all(re.match(r"<[0-7]>\{", ln) for ln in lines),
       "under journald every line starts with a <N> priority")
    ok(lines and not any('"ts"' in ln for ln in lines), "and carries no timestamp of its own")
    ok(any(ln.startswith("<6>") and "listening on" in ln for ln in lines), "info is <6>")


def refuse(n, threads):
    """microd with a bad MICROD_THREADS on a passed socket with n clients
    queued: (exit status, seconds, answers)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(512)
    port = ls.getsockname()[1]
    clients = []
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        clients.append(c)
    fd = ls.fileno()
    env = dict(os.environ, LISTEN_FDS="1", MICROD_THREADS=threads)
    t = time.monotonic()
    # LISTEN_PID must be microd's own pid: the shell's, kept by exec.
    proc = subprocess.Popen(["sh", "-c", 'LISTEN_PID=$$ exec "$0"', BIN], env=env, pass_fds=(fd,),
                            preexec_fn=lambda: os.dup2(fd, 3), stderr=subprocess.PIPE)
    try:
        rc = proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = None
    took = time.monotonic() - t
    ls.close()  # what microd left queued is reset now, not awaited
    answers = []
    for c in clients:
        c.settimeout(5)
        data = b""
        try:
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        answers.append(data)
        c.close()
    proc.stderr.close()
    return rc, took, answers


def test_bad_setting():
    rc, took, answers = refuse(40, "0")
    ok(rc == 2, "a bad setting on a passed socket: exit 2 (%.2f s)" % took)
    good = [a for a in answers if a.startswith(b"HTTP/1.1 503 ")
            and b"Content-Type: application/problem+json" in a
            and b'"detail":"microd cannot start: MICROD_THREADS: invalid value \'0\'' in a]
    ok(len(good) == 40, "each of 40 queued clients gets a 503 problem naming the setting (%d)" % len(good))
    rc, took, answers = refuse(2, "\x01\u00e9")
    ok(rc == 2 and all(b"invalid value '\\\\x01\\\\xc3\\\\xa9'" in a for a in answers),
       "a control or non-ASCII byte in the value is escaped in the answer: %r" % answers[0][-90:])


def main():
    test_bad_setting()
    test_notify()
    test_watchdog()
    test_activation()
    test_restart_under_load()
    test_units()
    test_journal()
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
