#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# deps.py -- the Makefile's package logic (ensure_pkgs, through make
# deps-test) against a fake dpkg-query, apt-get, sudo and id that only
# record: what apt-get would be asked to install, with no package installed
# or removed (TAP)
#
# An a|b|c word of DEB_TEST is any one of them: either libcurl flavour
# serves the tests, and asking apt for the OpenSSL one where the GnuTLS one
# is installed would remove it and everything that depends on it.
import os
import shutil
import subprocess
import tempfile

from tap import done, ok

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAKE = shutil.which("make") or "/usr/bin/make"
CURL = ["libcurl4-openssl-dev", "libcurl4-gnutls-dev", "libcurl4-nss-dev"]

# Every package is installed but those in $FAKE_MISSING.
FAKE_DPKG_QUERY = r"""#!/bin/sh
for p; do :; done
for m in $FAKE_MISSING; do
    if [ "$m" = "$p" ]; then
        echo "dpkg-query: no packages found matching $p" >&2
        exit 1
    fi
done
echo "install ok installed"
"""
# One line per call: the arguments.
FAKE_APT_GET = r"""#!/bin/sh
echo "$*" >> "$FAKE_LOG"
"""
# Not root, so the logic goes through sudo, which runs the rest as given
# (env, then the fake apt-get found on PATH).
FAKE_SUDO = r"""#!/bin/sh
echo "sudo" >> "$FAKE_LOG"
exec "$@"
"""
FAKE_ID = r"""#!/bin/sh
echo 1000
"""


def fakes(d):
    for name, text in (("dpkg-query", FAKE_DPKG_QUERY), ("apt-get", FAKE_APT_GET), ("sudo", FAKE_SUDO),
                       ("id", FAKE_ID)):
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)


def deps_test(d, missing):
    """make deps-test with the packages in missing not installed: (exit
    status, the calls recorded, make's output)."""
    log = os.path.join(d, "calls")
    if os.path.exists(log):
        os.unlink(log)
    env = dict(os.environ, PATH=d + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
               FAKE_MISSING=" ".join(missing), FAKE_LOG=log)
    r = subprocess.run([MAKE, "-s", "--no-print-directory", "-C", ROOT, "deps-test"], env=env,
                       capture_output=True, text=True, timeout=60)
    calls = open(log).read().splitlines() if os.path.exists(log) else []
    return r.returncode, calls, (r.stdout + r.stderr).strip()


def installs(calls):
    """The packages apt-get was asked to install, over every call."""
    pkgs = []
    for c in calls:
        words = c.split()
        if words[:1] == ["install"]:
            pkgs += [w for w in words[1:] if not w.startswith("-")]
    return pkgs


def main():
    d = tempfile.mkdtemp(prefix="microd-deps-")
    fakes(d)
    path = d + os.pathsep + os.environ.get("PATH", "")
    # The fakes must be what the logic finds: a real apt-get is never run.
    if not ok(all(shutil.which(n, path=path) == os.path.join(d, n) for n in ("dpkg-query", "apt-get", "sudo", "id")),
              "the fake dpkg-query, apt-get, sudo and id come first on PATH"):
        shutil.rmtree(d)
        return done()

    st, calls, out = deps_test(d, [])
    ok(st == 0 and calls == [], "everything installed: apt-get is not run (%s %s %r)" % (st, calls, out))

    st, calls, out = deps_test(d, ["libcurl4-openssl-dev", "libcurl4-nss-dev"])
    ok(st == 0 and not any(p in CURL for p in installs(calls)) and calls == [],
       "libcurl4-gnutls-dev installed: no libcurl flavour is asked for, so apt removes nothing (%s %s)"
       % (st, calls))

    st, calls, out = deps_test(d, ["libcurl4-openssl-dev", "libcurl4-gnutls-dev"])
    ok(st == 0 and calls == [], "  libcurl4-nss-dev installed: the same (%s %s)" % (st, calls))

    st, calls, out = deps_test(d, ["libcurl4-openssl-dev", "libcurl4-nss-dev", "perl"])
    ok(st == 0 and installs(calls) == ["perl"],
       "  and with perl missing too: perl alone is asked for (%s)" % calls)

    st, calls, out = deps_test(d, ["postgresql", "libpq-dev"])
    ok(st == 0 and sorted(installs(calls)) == ["libpq-dev", "postgresql"],
       "the database's server and client library missing: those two alone are asked for (%s)" % calls)

    st, calls, out = deps_test(d, CURL)
    ok(st == 0 and installs(calls) == ["libcurl4-openssl-dev"] and calls[:1] == ["sudo"] and
       "installing libcurl4-openssl-dev" in out,
       "no libcurl flavour installed: the first, libcurl4-openssl-dev, is installed, as root through sudo "
       "(%s %r)" % (calls, out))
    shutil.rmtree(d)
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
