# SPDX-License-Identifier: MIT
# server.py -- start and stop the microd under test for the Python tests
import os
import re
import signal
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
