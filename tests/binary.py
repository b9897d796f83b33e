#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# binary.py -- the hardening the build promises, read off the built binary
# with readelf (TAP). Only the plain build carries it: sanitizer builds trade
# FORTIFY for their own checks, so they are skipped.
import os
import re
import subprocess

from tap import done, ok, skip

BIN = os.path.abspath(os.environ.get("MICROD_BIN", "build/microd"))
CHECKS = 6


def readelf(*args):
    return subprocess.run(["readelf", "-W"] + list(args) + [BIN], capture_output=True, text=True,
                          check=True).stdout


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def documented():
    """Every flag and variable --help names is in README.md and microd.8."""
    helptext = subprocess.run([BIN, "--help"], capture_output=True, text=True).stdout
    flags = sorted(set(re.findall(r"^  (--[a-z-]+)", helptext, re.M)))
    names = sorted(set(re.findall(r"env: (MICROD_[A-Z_]+)", helptext)))
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(ROOT, "dist/microd.8")) as f:
        man = f.read().replace("\\-", "-")
    missing = [x for x in flags + names if x not in readme or x not in man]
    ok(len(flags) >= 15 and not missing, "all %d flags and %d variables of --help are in README.md and microd.8%s"
       % (len(flags), len(names), " (missing: %s)" % ", ".join(missing) if missing else ""))


def main():
    documented()
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
