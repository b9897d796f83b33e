#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# tls.py -- HTTPS beside HTTP with certificates made at test time by
# openssl: curl with --cacert, the refused TLS versions with openssl
# s_client, bad bytes on either port, a symlink-swap rotation under load
# with no failure, a pair that does not match kept out, SIGHUP (TAP)
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from server import BIN, free_port, http_once, poll, recv_all, start_microd, stop_microd, wait_exit
from tap import done, ok

DIR = tempfile.mkdtemp(prefix="microd-tls-")
CA_CNF = """[ca]
default_ca = c
[c]
dir = %s/ca
database = $dir/index
new_certs_dir = $dir
serial = $dir/serial
default_md = sha256
policy = p
copy_extensions = copy
unique_subject = no
[p]
commonName = supplied
""" % DIR


def openssl(*args, **kw):
    return subprocess.run(["openssl"] + list(args), capture_output=True, timeout=60, **kw)


def make_ca():
    os.makedirs(os.path.join(DIR, "ca"))
    open(os.path.join(DIR, "ca", "index"), "w").close()
    with open(os.path.join(DIR, "ca", "serial"), "w") as f:
        f.write("1000\n")
    with open(os.path.join(DIR, "ca.cnf"), "w") as f:
        f.write(CA_CNF)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", os.path.join(DIR, "ca.key"), "-out", os.path.join(DIR, "ca.crt"), "-days", "30",
            "-subj", "/CN=microd test CA")
    return os.path.join(DIR, "ca.crt")


def make_other_ca():
    key, crt = os.path.join(DIR, "other.key"), os.path.join(DIR, "other.crt")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", crt, "-days", "30", "-subj", "/CN=another CA")
    return crt


def make_leaf(name, start="-startdate", start_v=None, end_v=None, days=20):
    """A key and a certificate for localhost and 127.0.0.1, signed by the
    test CA: (cert path, key path)."""
    key, csr, crt = (os.path.join(DIR, name + ext) for ext in (".key", ".csr", ".crt"))
    ext = os.path.join(DIR, name + ".ext")
    with open(ext, "w") as f:
        f.write("[e]\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-out", csr, "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    dates = ["-startdate", start_v, "-enddate", end_v] if start_v else ["-days", str(days)]
    r = openssl("ca", "-batch", "-config", os.path.join(DIR, "ca.cnf"), "-cert", os.path.join(DIR, "ca.crt"),
                "-keyfile", os.path.join(DIR, "ca.key"), "-in", csr, "-out", crt, "-notext", *dates)
    assert r.returncode == 0, r.stderr
    return crt, key


def serial_of(path):
    out = openssl("x509", "-in", path, "-noout", "-serial").stdout.decode()
    return int(out.strip().split("=")[1], 16)


def not_after(path):
    out = openssl("x509", "-in", path, "-noout", "-enddate").stdout.decode().strip().split("=", 1)[1]
    return int(time.mktime(time.strptime(out, "%b %d %H:%M:%S %Y GMT")) - time.timezone)


def tls_port(log):
    with open(log) as f:
        m = re.search(r"listening on \S*?:(\d+) for HTTPS", f.read())
    return int(m.group(1)) if m else None


def context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    return ctx


def served_serial(port, ca):
    """The serial of the certificate a new handshake gets, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            with context(ca).wrap_socket(s, server_hostname="localhost") as t:
                der = t.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    r = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der,
                       capture_output=True, timeout=10)
    return int(r.stdout.decode().strip().split("=")[1], 16)


def https_get(port, ca, path="/health", sock=None):
    """One GET over a new TLS connection (or sock): (status, body)."""
    own = sock is None
    if own:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock = context(ca).wrap_socket(raw, server_hostname="localhost")
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % (path.encode(), b"Connection: close\r\n" if own else b""))
    data = b""
    while b"\r\n\r\n" not in data:
        b = sock.recv(4096)
        if not b:
            break
        data += b
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"content-length: (\d+)", head, re.I)
    while m and len(body) < int(m.group(1)):
        b = sock.recv(4096)
        if not b:
            break
        body += b
    if own:
        sock.close()
    st = re.match(rb"HTTP/1\.1 (\d{3})", head)
    return (int(st.group(1)) if st else None), body


def curl(port, ca, path="/health"):
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", ca, "-o", "-", "-w", "\n%{http_code}",
                        "https://localhost:%d%s" % (port, path)], capture_output=True, timeout=20)
    out = r.stdout.decode()
    body, _, code = out.rpartition("\n")
    return code, body, r.stderr.decode()


def s_client(port, version):
    """Whether openssl s_client, offering only this version (and allowing it
    ciphers at security level 0), completes a handshake."""
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-" + version,
                        "-cipher", "DEFAULT@SECLEVEL=0"], input=b"", capture_output=True, timeout=20)
    m = re.search(rb"Cipher is (\S+)", r.stdout)
    return m is not None and m.group(1) != b"(NONE)"


def start(cert, key, *extra):
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--tls-port", "0",
                                    "--tls-cert", cert, "--tls-key", key, "--log-format", "json"] + list(extra))
    # The HTTPS line comes after the HTTP one, through the log's own
    # writer thread: polled for, not read once.
    return proc, port, poll(lambda: tls_port(log), 10, 0.02) if port else None, log


def metrics(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    text = recv_all(s).decode()
    s.close()
    return text


def reloads(port):
    text = metrics(port)
    got = dict(re.findall(r'microd_tls_reloads_total\{result="(\w+)"\} (\d+)', text))
    return int(got.get("ok", -1)), int(got.get("failed", -1))


def test_serve(ca, a):
    proc, port, tport, log = start(*a)
    if not ok(tport is not None, "microd with --tls-cert and --tls-key logs its HTTPS port"):
        return
    code, body, err = curl(tport, ca)
    ok(code == "200" and json.loads(body or "{}") == {"status": "ok"},
       "curl --cacert https://localhost:PORT/health: 200 %s %s" % (body, err))
    ok(status_http(port) == 200, "  and HTTP on --port still answers")
    st, body = https_get(tport, ca, "/nope")
    ok(st == 404 and json.loads(body).get("request_id"), "  a 404 over HTTPS is problem details with a request id")
    text = metrics(port)
    m = re.search(r"microd_tls_certificate_expiry_timestamp_seconds (\d+)", text)
    ok(m and int(m.group(1)) == not_after(a[0]),
       "microd_tls_certificate_expiry_timestamp_seconds is the certificate's notAfter (%s, %d)"
       % (m and m.group(1), not_after(a[0])))
    ok('http_requests_total{method="GET",route="unmatched",code="404"} 1\n' in text,
       "  the HTTPS request is counted in http_requests_total")
    lines = [json.loads(l) for l in open(log) if '"msg":"request"' in l]
    ok(any(j.get("path") == "/nope" and j.get("status") == 404 for j in lines),
       "  and access-logged like any other")
    def probe(*args):
        r = subprocess.run([BIN, "probe"] + list(args), capture_output=True, timeout=20)
        return r.returncode, r.stderr.decode().strip()
    ok(probe("--url", "https://127.0.0.1:%d/livez" % tport) == (0, ""),
       "microd probe --url https://...: exit 0, verifying nothing, as the kubelet")
    ok(probe("--url", "https://localhost:%d/livez" % tport, "--cacert", ca) == (0, ""),
       "  with --cacert the chain and the name verify: exit 0")
    other = make_other_ca()
    rc, err = probe("--url", "https://localhost:%d/livez" % tport, "--cacert", other)
    ok(rc == 1 and err.endswith("TLS: the certificate does not verify against --cacert for localhost"),
       "  against another CA: exit 1, saying so: %s" % err)
    rc, err = probe("--url", "https://127.0.0.1:%d/livez" % port)
    ok(rc == 1 and "TLS" in err, "  https:// to the HTTP port: exit 1: %s" % err)
    for v, want in (("tls1", False), ("tls1_1", False), ("tls1_2", True), ("tls1_3", True)):
        ok(s_client(tport, v) == want, "openssl s_client -%s: %s" % (v, "handshake" if want else "refused"))
    stop_microd(proc, log)
    # The same offers succeed once the priorities allow them: what refused
    # them above was the default priority string.
    proc, port, tport, log = start(*a, "--tls-priorities", "NORMAL")
    ok(tport and s_client(tport, "tls1"), "  with --tls-priorities NORMAL the TLS 1.0 offer succeeds")
    stop_microd(proc, log)


def status_http(port, path="/health"):
    return http_once(port, path)[0]


def client_hello():
    """The first bytes a real TLS client sends."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def test_bad_bytes(ca, a):
    proc, port, tport, log = start(*a, "--idle-timeout", "2", "--threads", "2")
    if not ok(tport is not None, "microd for the bad-bytes tests"):
        return
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", tport), timeout=10)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    got = recv_all(s)
    s.close()
    ok(not got.startswith(b"HTTP/") and time.monotonic() - t0 < 3,
       "plain HTTP to the HTTPS port: no HTTP answer, closed in %.2f s (%r)" % (time.monotonic() - t0, got[:16]))
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(client_hello())
    got = recv_all(s)
    s.close()
    # libmicrohttpd answers 400 or just closes, by where the random bytes
    # put a line end; either way at once, not after the idle timeout.
    ok((got.startswith(b"HTTP/1.1 400") or got == b"") and time.monotonic() - t0 < 1.5,
       "a ClientHello to the HTTP port: 400 or a close, in %.2f s (%r)" % (time.monotonic() - t0, got[:40]))
    # Handshakes that stall: more than there are worker threads.
    stalled = []
    for i in range(6):
        s = socket.create_connection(("127.0.0.1", tport), timeout=10)
        if i % 2:
            s.sendall(client_hello()[:20])  # half a ClientHello
        stalled.append(s)
    t0 = time.monotonic()
    code, _, _ = curl(tport, ca)
    ok(code == "200" and status_http(port) == 200 and time.monotonic() - t0 < 3,
       "6 stalled handshakes on 2 worker threads: HTTPS and HTTP /health still answer (%.2f s)"
       % (time.monotonic() - t0))
    closed = []
    for s in stalled:
        s.settimeout(10)
        recv_all(s)  # to the close; a TLS alert may come before it
        closed.append(round(time.monotonic() - t0, 1))
        s.close()
    ok(max(closed) < 5, "  and each is closed by the idle timeout (2 s): after %s s" % closed)
    stop_microd(proc, log)


def test_trickled_handshake(ca, a):
    """A ClientHello sent a byte every 0.3 s: each byte resets the idle
    timeout (30 s), but the handshake must end within --header-timeout (2 s)
    of the accept, and the connection is closed then."""
    proc, port, tport, log = start(*a, "--idle-timeout", "30", "--header-timeout", "2")
    if not ok(tport is not None, "microd with --header-timeout 2 --idle-timeout 30"):
        return
    s = socket.create_connection(("127.0.0.1", tport), timeout=10)
    hello, sent, t0, gone = client_hello(), 0, time.monotonic(), None
    while gone is None and time.monotonic() - t0 < 6:
        try:
            s.send(hello[sent:sent + 1])
            sent += 1
        except OSError:
            gone = time.monotonic() - t0
            break
        s.setblocking(False)
        try:
            if s.recv(4096) == b"":
                gone = time.monotonic() - t0
        except BlockingIOError:
            pass
        except OSError:
            gone = time.monotonic() - t0
        s.setblocking(True)
        time.sleep(0.3)
    s.close()
    ok(gone is not None and 1.7 <= gone <= 4.0 and sent >= 6,
       "a handshake trickled a byte every 0.3 s is closed at the header timeout: after %s s, %d bytes sent"
       % ("%.2f" % gone if gone is not None else "never (6 s)", sent))
    n = re.search(r'^microd_connections_closed_total\{reason="header_timeout"\} (\d+)$', metrics(port), re.M)
    ok(n and int(n.group(1)) == 1, "and counted as a header timeout: %s" % (n.group(1) if n else None))
    code, _, _ = curl(tport, ca)
    ok(code == "200", "while a handshake made at once is served: %s" % code)
    stop_microd(proc, log)


def secret_dir(cert, key, name):
    """A Kubernetes Secret volume: tls.crt and tls.key links through ..data
    to a timestamped directory."""
    d = os.path.join(DIR, name)
    os.makedirs(d)
    swap_secret(d, cert, key, "v0")
    os.symlink("..data/tls.crt", os.path.join(d, "tls.crt"))
    os.symlink("..data/tls.key", os.path.join(d, "tls.key"))
    return d


def swap_secret(d, cert, key, version):
    """What the kubelet does on an update: a new directory, then ..data
    renamed onto it in one step."""
    ts = os.path.join(d, "..%s" % version)
    os.makedirs(ts)
    shutil.copy(cert, os.path.join(ts, "tls.crt"))
    shutil.copy(key, os.path.join(ts, "tls.key"))
    tmp = os.path.join(d, "..data_tmp")
    os.symlink("..%s" % version, tmp)
    os.rename(tmp, os.path.join(d, "..data"))


def test_rotation(ca, a, b, wrong_key):
    d = secret_dir(a[0], a[1], "secret")
    proc, port, tport, log = start(os.path.join(d, "tls.crt"), os.path.join(d, "tls.key"), "--threads", "2")
    if not ok(tport is not None, "microd on a Secret volume (..data links)"):
        return
    pairs = {serial_of(a[0]): a, serial_of(b[0]): b}
    ok(served_serial(tport, ca) == serial_of(a[0]), "it serves the first certificate")
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0, "why": []}
    lock = threading.Lock()

    def keepalive():
        while not stop.is_set():
            try:
                raw = socket.create_connection(("127.0.0.1", tport), timeout=5)
                sock = context(ca).wrap_socket(raw, server_hostname="localhost")
                for _ in range(50):
                    if stop.is_set():
                        break
                    st, _ = https_get(tport, ca, "/health", sock)
                    with lock:
                        counts["ok" if st == 200 else "failed"] += 1
                        if st != 200:
                            counts["why"].append(st)
                sock.close()
            except (OSError, ssl.SSLError) as e:
                with lock:
                    counts["failed"] += 1
                    counts["why"].append(repr(e)[:80])

    def handshakes():
        while not stop.is_set():
            try:
                st, _ = https_get(tport, ca)
            except (OSError, ssl.SSLError) as e:
                st = repr(e)[:80]
            with lock:
                counts["ok" if st == 200 else "failed"] += 1
                if st != 200:
                    counts["why"].append(st)

    threads = [threading.Thread(target=f) for f in (keepalive, keepalive, handshakes, handshakes)]
    for t in threads:
        t.start()
    seen = []
    for i in range(10):
        new = b if i % 2 == 0 else a
        swap_secret(d, new[0], new[1], "v%d" % (i + 1))
        got = poll(lambda: served_serial(tport, ca) == serial_of(new[0]), 10, 0.05)
        seen.append(bool(got))
    stop.set()
    for t in threads:
        t.join()
    ok(all(seen), "10 ..data swaps: each new certificate is served within the poll (%s)" % seen)
    ok(counts["failed"] == 0 and counts["ok"] > 100,
       "  under load (2 keep-alive clients, 2 new connections at a time): %d requests, %d failed %s"
       % (counts["ok"], counts["failed"], counts["why"][:5]))
    ok(reloads(port) == (10, 0), "  microd_tls_reloads_total: 10 ok, 0 failed (%s)" % (reloads(port),))
    # A pair that does not match: refused, the old one kept.
    serving = served_serial(tport, ca)
    swap_secret(d, b[0], wrong_key, "bad")
    why = "tls: keeping the certificate in use: the key in %s is not the key of the certificate in %s" % (
        os.path.join(d, "tls.key"), os.path.join(d, "tls.crt"))
    ok(poll(lambda: why in open(log).read(), 10, 0.1), "a mismatched pair is refused: %s" % why)
    ok(served_serial(tport, ca) == serving and reloads(port) == (10, 1),
       "  the certificate in use keeps serving; reloads failed 1 (%s)" % (reloads(port),))
    swap_secret(d, a[0], a[1], "good")
    ok(poll(lambda: served_serial(tport, ca) == serial_of(a[0]), 10, 0.1), "  and a good pair after it is taken")
    # SIGHUP reads the files again even when nothing changed.
    before = reloads(port)[0]
    proc.send_signal(signal.SIGHUP)
    ok(poll(lambda: reloads(port)[0] == before + 1, 5, 0.05)
       and "SIGHUP: reading the certificate and key again" in open(log).read(),
       "SIGHUP reloads the pair (reloads ok %d -> %d)" % (before, reloads(port)[0]))
    # A copy in place (the same inode, new bytes) is seen too; a touch
    # that changes no byte reloads nothing.
    shutil.copyfile(b[1], os.path.join(d, "tls.key"))
    shutil.copyfile(b[0], os.path.join(d, "tls.crt"))
    ok(poll(lambda: served_serial(tport, ca) == serial_of(b[0]), 10, 0.1),
       "files copied over in place (same inodes) are taken")
    before = reloads(port)  # b is served: both copies were looked at
    os.utime(os.path.join(d, "tls.crt"))
    os.utime(os.path.join(d, "tls.key"))
    # Two looks at least (one a second) must pass with nothing reloaded.
    ok(not poll(lambda: reloads(port) != before, 2.5, 0.1) and served_serial(tport, ca) == serial_of(b[0]),
       "  a touch that changes no byte is no reload (%s, then %s)" % (before, reloads(port)))
    del pairs
    stop_microd(proc, log)


def test_bad_start(ca, a, wrong_key, expired, soon):
    def run(*args):
        r = subprocess.run([BIN, "--port", "0"] + list(args), capture_output=True, timeout=10)
        return r.returncode, r.stderr.decode().strip().splitlines()

    missing = os.path.join(DIR, "missing.key")
    rc, lines = run("--tls-cert", a[0], "--tls-key", missing)
    ok(rc == 2 and lines == ["microd: cannot read %s: No such file or directory" % missing],
       "a missing key: exit 2, one line naming it: %s" % lines)
    unreadable = os.path.join(DIR, "unreadable.key")
    shutil.copy(a[1], unreadable)
    os.chmod(unreadable, 0)
    if os.geteuid() != 0:
        rc, lines = run("--tls-cert", a[0], "--tls-key", unreadable)
        ok(rc == 2 and lines == ["microd: cannot read %s: Permission denied" % unreadable],
           "an unreadable key: exit 2, one line naming it: %s" % lines)
    rc, lines = run("--tls-cert", a[0], "--tls-key", DIR)  # unreadable, also to root
    ok(rc == 2 and lines == ["microd: cannot read %s: Is a directory" % DIR],
       "a key path that cannot be read (a directory): exit 2, one line naming it: %s" % lines)
    rc, lines = run("--tls-cert", a[0], "--tls-key", wrong_key)
    ok(rc == 2 and lines == ["microd: the key in %s is not the key of the certificate in %s" % (wrong_key, a[0])],
       "a key that is not the certificate's: exit 2: %s" % lines)
    rc, lines = run("--tls-cert", expired[0], "--tls-key", expired[1])
    ok(rc == 2 and lines == ["microd: %s: the certificate expired at 2020-01-02T00:00:00Z" % expired[0]],
       "an expired certificate: exit 2: %s" % lines)
    r = subprocess.run([BIN, "--check-config", "--tls-cert", a[0], "--tls-key", a[1]], capture_output=True,
                       timeout=10)
    ok(r.returncode == 0 and ("https on port 8443: certificate %s, key %s, priorities "
                              "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2\n" % (a[0], a[1])) in r.stdout.decode(),
       "--check-config reads the pair and lists the HTTPS settings")
    r = subprocess.run([BIN, "--check-config", "--tls-cert", a[0], "--tls-key", a[1]], capture_output=True,
                       timeout=10, env=dict(os.environ, MICROD_TLS_PORT="tcp://10.96.0.9:443"))
    out = r.stdout.decode()
    ok(r.returncode == 0 and "https on port 8443:" in out
       and "ignored MICROD_TLS_PORT=tcp://10.96.0.9:443 (a Kubernetes service link)\n" in out,
       "  MICROD_TLS_PORT=tcp://... (a Service named microd-tls) is ignored as a service link")
    rc, lines = run("--check-config", "--tls-cert", a[0], "--tls-key", wrong_key)
    ok(rc == 2 and lines[-1:] == ["microd: the key in %s is not the key of the certificate in %s" % (wrong_key, a[0])],
       "  and refuses a bad pair with exit 2 as the start would")
    rc, lines = run("--tls-cert", a[0])
    ok(rc == 2 and lines == ["microd: --tls-cert without --tls-key: HTTPS needs both the certificate and its key"],
       "--tls-cert alone: exit 2: %s" % lines)
    rc, lines = run("--tls-cert", a[0], "--tls-key", a[1], "--tls-priorities", "NORMAL:+NONSENSE")
    ok(rc == 2 and lines == ["microd: --tls-priorities: GnuTLS refuses 'NORMAL:+NONSENSE' at '+NONSENSE'"],
       "a priority string GnuTLS refuses: exit 2: %s" % lines)
    proc, port, tport, log = start(*soon)
    ok(tport is not None and "expires at" in open(log).read() and "within 7 days" in open(log).read(),
       "a certificate that ends within 7 days is served, with a warning")
    stop_microd(proc, log)


def test_notify_and_limit(ca, a):
    """SIGHUP under a service manager: RELOADING=1 with MONOTONIC_USEC,
    then READY=1; and --connection-limit counts both ports' clients."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = os.path.join(DIR, "notify")
    sock.bind(path)
    sock.settimeout(0.2)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    proc, port, log = start_microd([BIN, "--port", "0", "--bind", "127.0.0.1", "--tls-port", "0", "--tls-cert", a[0],
                                    "--tls-key", a[1], "--connection-limit", "2", "--log-format", "json"], env=env)
    tport = port and poll(lambda: tls_port(log), 10, 0.02)
    msgs = []

    def drain_notify():
        try:
            while True:
                msgs.append(sock.recv(4096).decode())
        except socket.timeout:
            return msgs
    poll(lambda: any("READY=1" in m for m in drain_notify()), 5, 0.05)
    del msgs[:]
    proc.send_signal(signal.SIGHUP)
    poll(lambda: any(m == "READY=1" for m in drain_notify()), 5, 0.05)
    first = msgs[0] if msgs else ""
    ok(re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", first) and msgs[1:2] == ["READY=1"],
       "SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1, to NOTIFY_SOCKET: %s" % msgs)
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    for s in held:  # both accepted and counted before the next
        s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        s.recv(4096)
    try:
        st = https_get(tport, ca)[0]
    except (OSError, ssl.SSLError) as e:
        st = type(e).__name__
    def is_closed(s):
        s.settimeout(0.5)  # the closed one reads its end at once
        try:
            return s.recv(4096) == b""
        except socket.timeout:
            return False
        except OSError:
            return True
    gone = [s for s in held if is_closed(s)]
    text = metrics_after_close(held, port)
    m = re.search(r'microd_connections_closed_total\{reason="evicted"\} (\d+)', text)
    ok(st == 200 and m and int(m.group(1)) == 1 and len(gone) == 1,
       "--connection-limit 2 counts both ports: with 2 idle HTTP clients an HTTPS one is served by closing "
       "the one that waited longest (%s; evicted %s; %d closed)" % (st, m and m.group(1), len(gone)))
    stop_microd(proc, log)
    sock.close()


def metrics_after_close(held, port):
    for s in held:
        s.close()
    return poll(lambda: (lambda t: t if "microd_connections_refused_total" in t else None)(metrics(port)), 5, 0.05)


def test_odd_files(ca, a, soon):
    """FIFOs, a pair that becomes valid later, the warning at each reload,
    the ports."""
    fifo = os.path.join(DIR, "fifo.key")
    os.mkfifo(fifo)
    t0 = time.monotonic()
    r = subprocess.run([BIN, "--port", "0", "--tls-cert", a[0], "--tls-key", fifo], capture_output=True, timeout=20)
    ok(r.returncode == 2 and r.stderr.decode() == "microd: cannot read %s: not a regular file\n" % fifo
       and time.monotonic() - t0 < 5, "a FIFO as the key: exit 2 at once, never waited on: %r" % r.stderr)
    r = subprocess.run([BIN, "--port", "9443", "--tls-port", "9443", "--tls-cert", a[0], "--tls-key", a[1]],
                       capture_output=True, timeout=20)
    ok(r.returncode == 2 and r.stderr == b"microd: --tls-port 9443 is the HTTP port too: HTTPS needs a port of its own\n",
       "--tls-port the same as --port: exit 2: %r" % r.stderr)
    d = secret_dir(soon[0], soon[1], "odd")
    proc, port, tport, log = start(os.path.join(d, "tls.crt"), os.path.join(d, "tls.key"), "--per-ip-limit", "1")
    if not ok(tport is not None, "microd on a certificate that ends within 7 days"):
        return
    # --per-ip-limit is per port: one client on each from 127.0.0.1.
    held = socket.create_connection(("127.0.0.1", port), timeout=5)
    held.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    held.recv(4096)
    # The limit works (a second HTTP client from it is refused), and it is
    # the HTTP port's own: HTTPS still answers that address.
    ok(status_http(port) is None and https_get(tport, ca)[0] == 200,
       "--per-ip-limit 1 applies to each port: with an HTTP client held, a second HTTP one is refused and "
       "HTTPS still answers the same address")
    held.close()
    t0 = time.monotonic()
    r = subprocess.run([BIN, "probe", "--url", "https://127.0.0.1:%d/livez" % tport, "--cacert", fifo,
                        "--timeout", "1"], capture_output=True, timeout=20)
    ok(r.returncode == 1 and r.stderr.decode().strip().endswith("--cacert %s: not a regular file" % fifo)
       and time.monotonic() - t0 < 3, "microd probe --cacert FIFO: exit 1 at once: %s" % r.stderr.decode().strip())
    # A FIFO swapped in: refused, and the main thread still takes signals.
    ts = os.path.join(d, "..fifo")
    os.makedirs(ts)
    shutil.copy(soon[0], os.path.join(ts, "tls.crt"))
    os.mkfifo(os.path.join(ts, "tls.key"))
    os.symlink("..fifo", os.path.join(d, "..data_tmp"))
    os.rename(os.path.join(d, "..data_tmp"), os.path.join(d, "..data"))
    why = "tls: keeping the certificate in use: cannot read %s: not a regular file" % os.path.join(d, "tls.key")
    ok(poll(lambda: why in open(log).read(), 5, 0.1), "a FIFO swapped in as the key is refused: %s" % why)
    # A pair that becomes valid 3 s from now: refused once, taken later.
    later = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() + 3))
    until = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() + 5 * 86400))
    future = make_leaf("future", start_v=later, end_v=until)
    swap_secret(d, future[0], future[1], "future")
    ok(poll(lambda: "the certificate is not valid before" in open(log).read(), 5, 0.1),
       "a certificate valid only from 3 s on is refused")
    ok(poll(lambda: served_serial(tport, ca) == serial_of(future[0]), 10, 0.2),
       "  and served once it is valid, with nothing else changed (each look tries a failing pair again)")
    text = open(log).read()
    ok(text.count("not valid before") == 1, "  its failure logged once, not at every try (%d)"
       % text.count("not valid before"))
    ok(text.count("within 7 days") >= 2, "the 7-day warning comes at the start and again at the reload (%d)"
       % text.count("within 7 days"))
    proc.send_signal(signal.SIGTERM)
    ok(wait_exit(proc, 15) == 0, "  and SIGTERM still stops it: exit 0")
    os.unlink(log)


def test_drain(ca, a):
    proc, port, tport, log = start(*a, "--drain-delay", "2")
    if not ok(tport is not None, "microd for the drain"):
        return
    proc.send_signal(signal.SIGTERM)
    ok(poll(lambda: https_get(tport, ca, "/ready")[0] == 503, 3, 0.05), "SIGTERM: HTTPS /ready is 503 during the delay")
    ok(https_get(tport, ca, "/health")[0] == 200, "  while HTTPS still serves")
    proc.send_signal(signal.SIGHUP)  # a reload during the stop: not a second stop
    ok(wait_exit(proc, 15) == 0 and "SIGHUP during the stop: ignored" in open(log).read(),
       "  a SIGHUP during the drain is ignored, and the drain ends with exit 0")
    os.unlink(log)


def test_activation(ca, a):
    """systemd passes both sockets, named http and https."""
    if shutil.which("systemd-socket-activate") is None:
        ok(True, "# SKIP systemd-socket-activate is not installed")
        return
    hp, tp = free_port(), free_port()
    log = tempfile.NamedTemporaryFile(prefix="microd-test-", delete=False)
    proc = subprocess.Popen(["systemd-socket-activate", "-l", "127.0.0.1:%d" % hp, "-l", "127.0.0.1:%d" % tp,
                             "--fdname=http:https", BIN, "--tls-cert", a[0], "--tls-key", a[1]],
                            stderr=log)
    ok(poll(lambda: subprocess.run(["ss", "-Hltn", "sport = :%d" % tp], capture_output=True,
                                   text=True).stdout.strip(), 10, 0.02), "systemd-socket-activate listens")
    st = poll(lambda: status_http(hp), 10, 0.1)  # the first connection starts microd
    got = poll(lambda: https_get(tp, ca)[0], 10, 0.1)
    text = open(log.name).read()
    ok(st == 200 and got == 200 and re.search(r"listening on 127\.0\.0\.1:%d for HTTPS \(.*\) \(socket passed "
                                              r"by the service manager\)" % tp, text),
       "with --fdname=http:https both passed sockets are served, HTTPS on the one named https (%s, %s)" % (st, got))
    proc.send_signal(signal.SIGTERM)
    wait_exit(proc, 15)
    os.unlink(log.name)


def main():
    ca = make_ca()
    a = make_leaf("a")
    b = make_leaf("b")
    wrong = make_leaf("wrong")
    expired = make_leaf("expired", start_v="20200101000000Z", end_v="20200102000000Z")
    soon = make_leaf("soon", days=3)
    test_serve(ca, a)
    test_bad_bytes(ca, a)
    test_trickled_handshake(ca, a)
    test_rotation(ca, a, b, wrong[1])
    test_bad_start(ca, a, wrong[1], expired, soon)
    test_drain(ca, a)
    test_odd_files(ca, a, soon)
    test_notify_and_limit(ca, a)
    test_activation(ca, a)
    shutil.rmtree(DIR, ignore_errors=True)
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
