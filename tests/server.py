# SPDX-License-Identifier: MIT
# server.py -- start and stop the microd under test for the Python tests
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

BIN = os.path.abspath(os.environ.get("MICROD_BIN", "build/microd"))


def start_microd(cmd, env=None, timeout=10):
    """Runs cmd (its argv, microd's options included) with stderr in a
    temporary file and waits for the "listening on" line. Returns
    (proc, port or None, log path)."""
    log = tempfile.NamedTemporaryFile(prefix="microd-test-", delete=False)
    proc = subprocess.Popen(cmd, stderr=log, env=env)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with open(log.name) as f:
            m = re.search(r"listening on \S*?:(\d+)\b", f.read())
        if m:
            return proc, int(m.group(1)), log.name
        time.sleep(0.01)
    return proc, None, log.name


def wait_exit(proc, timeout):
    """The exit status within timeout seconds, else None after a SIGKILL."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def recv_all(sock, size=65536):
    """Reads until the peer closes; what arrived before a reset counts."""
    got = b""
    try:
        while True:
            b = sock.recv(size)
            if not b:
                break
            got += b
    except OSError:
        pass
    return got


def stop_microd(proc, log, timeout=15):
    """SIGTERM, then the exit status (None when it had to be killed); the
    log is removed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    status = wait_exit(proc, timeout)
    os.unlink(log)
    return status


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A port the kernel says is free now (for servers that cannot take 0)."""
    s = socket.socket(family)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def poll(fn, seconds, step=0.2):
    """fn() until it returns something true, or the deadline: its last value."""
    deadline = time.monotonic() + seconds
    v = fn()
    while not v and time.monotonic() < deadline:
        time.sleep(step)
        v = fn()
    return v


def http_once(port, path="/health", method="GET", body=None, timeout=5):
    """One request on a new connection to 127.0.0.1: (status, the whole
    answer), or (None, why) when there is no status line."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        req = "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" % (method, path)
        if body is not None:
            req += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        s.sendall(req.encode() + b"\r\n" + (body or b""))
        data = recv_all(s)
        s.close()
    except OSError as e:
        return None, str(e).encode()
    m = re.match(rb"HTTP/1\.1 (\d{3})", data)
    return (int(m.group(1)), data) if m else (None, b"no status line: %r" % data[:60])


def parse_response(got):
    """An HTTP/1.1 answer as (status or None, {lower-case name: value},
    body bytes)."""
    m = re.match(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n", got)
    if not m:
        return None, {}, got
    end = got.find(b"\r\n\r\n")
    fields = {}
    for line in got[m.end():end].split(b"\r\n"):
        name, _, value = line.partition(b":")
        fields[name.decode().lower()] = value.strip().decode()
    return int(m.group(1)), fields, got[end + 4:]


def readme_code(heading):
    """The ```c blocks of README.md's section under heading ("### Adding a
    route"), up to the next heading of any level."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.md")) as f:
        readme = f.read()
    section = readme[readme.index(heading + "\n"):]
    section = section[:re.search(r"\n##+ ", section[4:]).start() + 4]
    return re.findall(r"```c\n(.*?)```", section, re.S)
