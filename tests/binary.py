#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# binary.py -- the hardening the build promises, read off the built binary
# with readelf (TAP). Only the plain build carries it: sanitizer builds trade
# FORTIFY for their own checks, so they are skipped.
import os
import re
import shutil
import socket
import subprocess
import tempfile

from server import start_microd, stop_microd
from tap import done, ok, skip

BIN = os.path.abspath(os.environ.get("MICROD_BIN", "build/microd"))
CHECKS = 6


def readelf(*args):
    return subprocess.run(["readelf", "-W"] + list(args) + [BIN], capture_output=True, text=True,
                          check=True).stdout


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def documented():
    """Every flag and variable --help names is in microd.8's OPTIONS, the
    reference; every one README.md, the tour, names in its text is real."""
    helptext = subprocess.run([BIN, "--help"], capture_output=True, text=True).stdout
    probetext = subprocess.run([BIN, "probe", "--help"], capture_output=True, text=True).stdout
    flags = sorted(set(re.findall(r"^  (--[a-z-]+)", helptext, re.M)))
    names = sorted(set(re.findall(r"env: (MICROD_[A-Z_]+)", helptext)))
    with open(os.path.join(ROOT, "dist/microd.8")) as f:
        man = re.sub(r"\\f[BIRP]", "", f.read().replace("\\-", "-"))
    options = man[man.index("\n.SH OPTIONS\n"):]
    options = options[:options.index("\n.SH ", 5)]
    missing = [x for x in flags + names if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(x), options)]
    ok(len(flags) >= 15 and not missing, "all %d flags and %d variables of --help are in microd.8's OPTIONS%s"
       % (len(flags), len(names), " (missing: %s)" % ", ".join(missing) if missing else ""))
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    # Inline code only: the indented commands hold docker's and systemctl's flags.
    spans = " ".join(re.findall(r"`([^`\n]+)`", readme))
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", spans)) | set(re.findall(r"MICROD_[A-Z_]+", spans))
    known = set(flags + names) | set(re.findall(r"(--[a-z][a-z-]*)", probetext)) | {"PORT"}
    stale = sorted(named - known)
    ok(len(named) >= 15 and not stale, "the %d flags and variables README.md names are microd's%s"
       % (len(named), " (not: %s)" % ", ".join(stale) if stale else ""))


def man_options():
    """microd.8's OPTIONS (from its .SH OPTIONS to the next .SH) tags exactly
    the flags --help lists, which come from the option table; and the page
    names every variable the table reads."""
    helptext = subprocess.run([BIN, "--help"], capture_output=True, text=True).stdout
    flags = set(re.findall(r"^  (--[a-z-]+)", helptext, re.M))
    names = set(re.findall(r"\b(?:env: |then )([A-Z][A-Z_]+)", helptext))
    with open(os.path.join(ROOT, "dist/microd.8")) as f:
        man = f.read()
    section = re.search(r"^\.SH \"?OPTIONS\"?[ \t]*\n(.*?)(?=^\.SH|\Z)", man, re.M | re.S)
    lines = section.group(1).split("\n") if section else []
    # An entry is a .TP (or .TQ) paragraph whose tag line is .B, .BI or .BR
    # with the flag first; the flags named in the text do not count.
    tagged = set()
    for tp, tag in zip(lines, lines[1:]):
        m = re.match(r"\.B[IR]?\s+\"?((?:\\-){2}(?:[a-z0-9]|\\-)+)", tag)
        if re.match(r"\.T[PQ]\b", tp) and m:
            tagged.add(m.group(1).replace("\\-", "-"))
    missing, extra = sorted(flags - tagged), sorted(tagged - flags)
    ok(section is not None and len(flags) >= 30 and not missing and not extra,
       "microd.8's OPTIONS has an entry for each of the %d flags of --help and no other%s%s"
       % (len(flags), " (no entry: %s)" % ", ".join(missing) if missing else "",
          " (not a flag: %s)" % ", ".join(extra) if extra else ""))
    text = re.sub(r"\\f(?:\[[^]]*\]|\(..|.)", "", man)  # no font changes: \fBPORT\fR
    unnamed = sorted(n for n in names if not re.search(r"(?<![A-Za-z0-9_])%s(?![A-Za-z0-9_])" % n, text))
    ok(len(names) >= 30 and not unnamed, "microd.8 names all %d variables of the option table%s"
       % (len(names), " (missing: %s)" % ", ".join(unnamed) if unnamed else ""))


def run_checks():
    """Small promises of the start-up and /metrics, against the binary."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROD_") and k != "PORT"}
    proc, port, log = start_microd([BIN, "--threads", "1", "--bind", "127.0.0.1", "--port", "0"], env)
    text = open(log).read()
    ok(port is not None and "1 threads" in text and "Thread pool is not used" not in text,
       "--threads 1 starts without libmicrohttpd's pool-of-one warning")
    if port is not None:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"process_start_time_seconds" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        m = re.search(rb"\nprocess_open_fds (\d+)", data)
        # The scrape's connection is still open: the same descriptors.
        fds = len(os.listdir("/proc/%d/fd" % proc.pid))
        ok(m is not None and int(m.group(1)) == fds,
           "process_open_fds %s is what /proc/PID/fd lists (%d)" % (m and m.group(1).decode(), fds))
        s.close()
    stop_microd(proc, log)

    def check(args, extra, cmd_prefix=()):
        e = dict(env, **extra)
        r = subprocess.run(list(cmd_prefix) + [BIN, "--check-config"] + args, env=e, capture_output=True,
                           text=True, timeout=10)
        return r.returncode, r.stdout + r.stderr
    rc, out = check([], {"MICROD_THREADS": "0"})
    ok(rc == 2 and "MICROD_THREADS: invalid value '0'" in out, "--check-config: a bad variable exits 2 naming it")
    rc, out = check(["--threads", "3"], {"MICROD_THREADS": "0", "MICROD_PORT": "tcp://10.96.0.12:80",
                                        "PORT": "9000"})
    ok(rc == 0 and "threads 3 (from --threads)" in out and "port 9000" in out and "ignored MICROD_PORT" in out,
       "a flag wins over a bad variable; a service link is ignored, PORT applies: %s" % out.replace("\n", "; "))
    if shutil.which("taskset"):
        rc, out = check([], {}, ("taskset", "-c", "0"))
        ok(rc == 0 and "threads 1 (from 1 CPU in the affinity mask)" in out,
           "one CPU in the affinity mask: 1 thread, saying so")
    else:
        ok(False, "taskset is missing: install util-linux")
    with tempfile.TemporaryFile() as f:
        st = os.fstat(f.fileno())
        e = dict(env, MICROD_THREADS="0", JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
        rc = subprocess.run([BIN], env=e, stderr=f, timeout=10).returncode
        f.seek(0)
        line = f.read().decode()
    ok(rc == 2 and line.startswith("<3>microd: MICROD_THREADS"),
       "under journald a configuration error carries priority 3 (err): %r" % line[:40])


def main():
    documented()
    man_options()
    run_checks()
    if "/sanitize/" in BIN or "/tsan/" in BIN:
        skip("a sanitizer build is not hardened the same way", CHECKS)
        return done()
    header, dynamic = readelf("-h"), readelf("-d")
    segments, symbols = readelf("-l"), readelf("--dyn-syms")
    ok(re.search(r"Type:\s+DYN", header) and re.search(r"FLAGS_1\).*\bPIE\b", dynamic),
       "position-independent executable")
    ok("GNU_RELRO" in segments, "RELRO segment")
    ok(re.search(r"\(FLAGS\).*BIND_NOW", dynamic) or re.search(r"FLAGS_1\).*\bNOW\b", dynamic),
       "BIND_NOW: full RELRO")
    stack = re.search(r"GNU_STACK(?:\s+\S+){5}\s+(\S+)", segments)
    ok(stack is not None and "E" not in stack.group(1), "non-executable stack (%s)"
       % (stack.group(1) if stack else "no GNU_STACK"))
    ok("__stack_chk_fail" in symbols, "stack protector in use (__stack_chk_fail)")
    fortified = sorted(set(re.findall(r"__(\w+)_chk\b", symbols)) - {"stack"})
    ok(len(fortified) >= 3, "FORTIFY in use: %s" % ", ".join("__%s_chk" % f for f in fortified))
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
