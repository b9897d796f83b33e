#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# pg.py -- a throw-away PostgreSQL cluster for the suites: initdb in a
# directory of its own, started on 127.0.0.1 and a unix socket in that
# directory, stopped and restarted under load, then removed
#
# PostgreSQL refuses to run as root, and CI runs as root: there the server
# programs run as the unprivileged user MICROD_PG_USER (default postgres)
# through runuser, and the directory is theirs. As anyone else they run
# directly. Readiness is pg_isready polled against a deadline.
#
#   from pg import Cluster
#   with Cluster() as pg:          # initdb + start; removed on exit
#       uri = pg.uri               # postgresql://microd:SECRET@127.0.0.1:PORT/microd
#       pg.stop(); pg.restart()
#       pg.psql("select 1")
#
#   python3 tests/pg.py start DIR  # prints the URI (initdb on first use)
#   python3 tests/pg.py stop DIR   # stops, keeps DIR
#   python3 tests/pg.py clean DIR  # stops if running, removes DIR
import glob
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

USER = "microd"      # the cluster's superuser, also the database's owner
DATABASE = "microd"
START_SECONDS = 30   # initdb excluded: from pg_ctl start to accepting


def bindir():
    """The server programs: $MICROD_PG_BINDIR, else Debian's newest."""
    d = os.environ.get("MICROD_PG_BINDIR")
    if d:
        return d
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise RuntimeError("pg.py: no /usr/lib/postgresql/*/bin/initdb: install Debian's postgresql")
    return os.path.dirname(found[-1])


def free_port():
    """A port nothing listens on now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env():
    """Our environment without libpq's PG* variables, which would otherwise
    override what the programs are told."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


class Cluster:
    """One cluster in one directory. dir=None: a new temporary directory,
    removed by cleanup(). A dir that holds a cluster already (state.json) is
    reused: same port, same password."""

    def __init__(self, dir=None, start=True):
        self.bin = bindir()
        self.dir = os.path.abspath(dir or tempfile.mkdtemp(prefix="microd-pg-"))
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.state = os.path.join(self.dir, "state.json")
        self.user = None
        if os.geteuid() == 0:
            self.user = os.environ.get("MICROD_PG_USER", "postgres")
            self.pw = pwd.getpwnam(self.user)
        self.running = False
        if os.path.exists(self.state):
            with open(self.state) as f:
                s = json.load(f)
            self.port, self.password = s["port"], s["password"]
        else:
            self.port, self.password = None, secrets.token_urlsafe(16)
        if start:
            self.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    # What clients use.
    @property
    def uri(self):
        """The libpq URI over TCP, with the password."""
        return "postgresql://%s:%s@127.0.0.1:%d/%s" % (USER, self.password, self.port, DATABASE)

    @property
    def socket_conninfo(self):
        """key=value over the unix socket (local connections: trust)."""
        return "host=%s port=%d user=%s dbname=%s" % (self.dir, self.port, USER, DATABASE)

    def _as_server(self, argv, **kw):
        """Runs a server program as the unprivileged user when we are root."""
        if self.user:
            argv = ["runuser", "-u", self.user, "--"] + argv
        return subprocess.run(argv, cwd=self.dir, env=clean_env(), **kw)

    def _client(self, prog, *args, **kw):
        argv = [os.path.join(self.bin, prog), "-h", self.dir, "-p", str(self.port), "-U", USER] + list(args)
        return subprocess.run(argv, env=clean_env(), capture_output=True, text=True, **kw)

    def _initdb(self):
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        if len(os.path.join(self.dir, ".s.PGSQL.65535")) > 107:
            raise RuntimeError("pg.py: %s is too long for a unix socket path" % self.dir)
        pwfile = os.path.join(self.dir, "pwfile")
        with open(pwfile, "w") as f:
            f.write(self.password + "\n")
        if self.user:
            os.chown(self.dir, self.pw.pw_uid, self.pw.pw_gid)
            os.chown(pwfile, self.pw.pw_uid, self.pw.pw_gid)
        r = self._as_server([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", USER,
                             "--pwfile", pwfile, "--auth-local=trust", "--auth-host=scram-sha-256",
                             "-E", "UTF8", "--locale=C", "--no-sync"],
                            capture_output=True, text=True, timeout=120)
        os.unlink(pwfile)
        if r.returncode != 0:
            raise RuntimeError("pg.py: initdb failed (%d): %s" % (r.returncode, r.stdout + r.stderr))
        # Settings that hold for every start; the port goes on the command
        # line so a taken one can be swapped before the first start.
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n# pg.py\nlisten_addresses = '127.0.0.1'\n"
                    "unix_socket_directories = '%s'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "shared_buffers = 16MB\n"
                    "shared_preload_libraries = 'pg_stat_statements'\n" % self.dir)

    def _save(self):
        with open(self.state, "w") as f:
            json.dump({"port": self.port, "password": self.password}, f)

    def _pg_ctl_start(self):
        open(self.log, "a").close()
        if self.user:
            os.chown(self.log, self.pw.pw_uid, self.pw.pw_gid)
        offset = os.path.getsize(self.log)
        # -W: pg_ctl returns at once; readiness is ours to poll.
        r = self._as_server([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l", self.log, "-W",
                             "-o", "-p %d -k %s" % (self.port, self.dir), "start"],
                            capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("pg.py: pg_ctl start failed: %s" % (r.stdout + r.stderr))
        return offset

    def _wait_ready(self, offset):
        """Polls pg_isready until it accepts: True; False when the server's
        log says it gave up (a taken port); raises at the deadline."""
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            r = subprocess.run([os.path.join(self.bin, "pg_isready"), "-q", "-h", self.dir,
                                "-p", str(self.port), "-d", "postgres", "-U", USER, "-t", "1"],
                               env=clean_env())
            if r.returncode == 0:
                return True
            with open(self.log, errors="replace") as f:
                f.seek(offset)
                tail = f.read()
            if "database system is shut down" in tail or "could not create any TCP/IP sockets" in tail:
                return False
            time.sleep(0.02)  # a poll interval, not a wait for an event
        raise RuntimeError("pg.py: not ready within %d s; log:\n%s" % (START_SECONDS, self.log_text()))

    def start(self):
        """initdb on first use, start, wait until it accepts; returns the URI."""
        fresh = not os.path.exists(os.path.join(self.data, "PG_VERSION"))
        if not fresh and self.port is not None and self.is_running():
            self.running = True
            return self.uri
        if fresh:
            self._initdb()
        for attempt in range(3):
            if self.port is None or (fresh and attempt > 0):
                self.port = free_port()
            offset = self._pg_ctl_start()
            if self._wait_ready(offset):
                break
        else:
            raise RuntimeError("pg.py: the server did not start:\n%s" % self.log_text())
        self.running = True
        self._save()
        if fresh:
            r = self._client("createdb", "-O", USER, DATABASE, timeout=60)
            if r.returncode != 0:
                raise RuntimeError("pg.py: createdb: %s" % r.stderr)
            self.psql("create extension pg_stat_statements")
        return self.uri

    def stop(self, mode="fast"):
        """Stops the server (fast: clients get 57P01 and are cut off;
        immediate: as a crash). pg_ctl -w returns once it has exited."""
        r = self._as_server([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", mode, "-w",
                             "-t", "60", "stop"], capture_output=True, text=True, timeout=90)
        self.running = False
        if r.returncode != 0 and "Is server running?" not in r.stderr:
            raise RuntimeError("pg.py: pg_ctl stop: %s" % (r.stdout + r.stderr))

    def restart(self):
        """Starts a stopped cluster again, on the same port."""
        return self.start()

    def is_running(self):
        r = self._as_server([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "status"],
                            capture_output=True, text=True, timeout=30)
        return r.returncode == 0

    def psql(self, sql, db=DATABASE):
        """Runs sql over the socket; its rows as text (-At), or raises."""
        r = self._client("psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("pg.py: psql %r: %s" % (sql, r.stderr.strip()))
        return r.stdout

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def cleanup(self):
        """Stops the server if it runs and removes the directory."""
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def main(argv):
    if len(argv) != 3 or argv[1] not in ("start", "stop", "clean"):
        print("usage: pg.py start|stop|clean DIR", file=sys.stderr)
        return 2
    cmd, d = argv[1], argv[2]
    if cmd == "start":
        c = Cluster(d)
        print(c.uri)
    elif not os.path.exists(os.path.join(d, "state.json")):
        print("pg.py: no cluster in %s" % d, file=sys.stderr)
        return 1 if cmd == "stop" else 0
    elif cmd == "stop":
        Cluster(d, start=False).stop()
    else:
        Cluster(d, start=False).cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
