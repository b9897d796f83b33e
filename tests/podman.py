#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# podman.py -- dist/Dockerfile built and run by a real container engine (TAP)
#
# Debian's podman builds the image (--format docker, or HEALTHCHECK is
# dropped) from a base imported from the tree tests/debian.sh makes, with no
# network, and runs it: its health check, a stop under load, the sandbox
# flags, a random uid, the Kubernetes manifest's limits under a connection
# flood, and the port set by flag and by variable. podman's configuration
# and storage live under build/engines/podman; the system's are not touched
# (these machines need a containers.conf with ulimits root may set and the
# runc runtime).
import json
import os
import re
import resource
import select
import shutil
import socket
import subprocess
import sys
import threading
import time

import yaml

from server import free_port, http_once as http, poll
from tap import done, ok

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINES = os.path.join(ROOT, "build", "engines")
TREE = os.path.join(ENGINES, "debian")
HERE = os.path.join(ENGINES, "podman")
BASE = "localhost/microd-base:bookworm"
IMAGE = "localhost/microd:test"
T0 = time.monotonic()
ENV = dict(os.environ, CONTAINERS_CONF=os.path.join(HERE, "containers.conf"),
           CONTAINERS_STORAGE_CONF=os.path.join(HERE, "storage.conf"))


def note(msg):
    print("# " + msg, file=sys.stderr, flush=True)


def podman(*args, check=False, timeout=600, input=None):
    r = subprocess.run(["podman"] + list(args), env=ENV, capture_output=True, timeout=timeout, input=input)
    if check and r.returncode != 0:
        raise RuntimeError("podman %s: %s" % (" ".join(args[:3]), r.stderr.decode()[-500:]))
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def configure():
    os.makedirs(HERE, exist_ok=True)
    # podman's defaults raise rlimits, which root may not do here: the
    # open-file hard limit as it is, and a process limit below the hard one
    # (runc is refused even the hard value itself here).
    def hard(flag):
        if flag == "n":
            return resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        return min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    with open(os.path.join(HERE, "containers.conf"), "w") as f:
        f.write('[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n'
                '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
                % (hard("n"), hard("n"), hard("u"), hard("u")))
    with open(os.path.join(HERE, "storage.conf"), "w") as f:
        f.write('[storage]\ndriver = "overlay"\ngraphroot = "%s/storage"\nrunroot = "%s/run"\n' % (HERE, HERE))


def base_image():
    """The base imported from the shared tree; imported again when the tree
    was made from another package list (its .done, copied to base.done)."""
    if subprocess.run(["sh", os.path.join(ROOT, "tests/debian.sh"), TREE]).returncode != 0:
        return None
    with open(TREE + ".done") as f:
        made = f.read()
    stamp = os.path.join(HERE, "base.done")
    if podman("image", "exists", BASE)[0] == 0 and os.path.exists(stamp) and open(stamp).read() == made:
        return "cached"
    tar = subprocess.run(["tar", "-C", TREE, "--exclude=./boot", "--exclude=./usr/lib/modules",
                          "--exclude=./root/.ssh", "-c", "."], capture_output=True, check=True).stdout
    podman("import", "-", BASE, input=tar, check=True)
    with open(stamp, "w") as f:
        f.write(made)
    return "imported"


def run(name, args=(), env=(), cmd=(), port=8080):
    """Starts a container; returns the host port that reaches its port."""
    host = free_port()
    podman("rm", "-f", "-t", "0", name)
    envs = []
    for k, v in env:
        envs += ["-e", "%s=%s" % (k, v)]
    podman("run", "-d", "--name", name, "-p", "127.0.0.1:%d:%d" % (host, port), *envs, *args, IMAGE, *cmd,
           check=True)
    return host


def state(name, field):
    return podman("inspect", "--format", "{{%s}}" % field, name)[1].strip()


def logs(name):
    rc, out, err = podman("logs", name)
    return out + err


def healthy(name):
    rc, out, err = podman("healthcheck", "run", name, timeout=60)
    return rc == 0 and "unhealthy" not in out, (out + err).strip()


def test_build():
    t = time.monotonic()
    rc, out, err = podman("build", "--format", "docker", "--network", "none", "-f", "dist/Dockerfile",
                          "--build-arg", "BASE=" + BASE, "--build-arg", "COMMIT=podman", "-t", IMAGE, ROOT,
                          timeout=900)
    ok(rc == 0, "podman build --format docker --network none of dist/Dockerfile (%.0f s)%s" % (
        time.monotonic() - t, "" if rc == 0 else ": " + (out + err)[-600:]))
    inspect = json.loads(podman("image", "inspect", IMAGE)[1] or "[{}]")[0]
    hc = inspect.get("Healthcheck") or {}
    ok(hc.get("Test") == ["CMD", "microd", "probe"], "the image keeps HEALTHCHECK CMD microd probe: %s" % hc)
    files = podman("run", "--rm", "--entrypoint", "/usr/bin/microd", IMAGE, "--version")[1]
    ok("microd 0.1.0 (commit podman)" in files, "the image runs microd --version: %s" % files.strip())
    return rc == 0


def test_run_and_health():
    port = run("m-plain", ("--read-only", "--cap-drop=ALL", "--security-opt", "no-new-privileges"))
    up = poll(lambda: http(port)[0] == 200, 30)
    ok(up, "--read-only --cap-drop=ALL --security-opt no-new-privileges: /health answers 200")
    h = healthy("m-plain")
    ok(h[0], "podman healthcheck run: healthy %s" % h[1])
    ok(state("m-plain", ".Config.User") == "65532:65532", "as uid 65532")
    # The check can fail: a stopped process does not answer in time.
    podman("kill", "-s", "STOP", "m-plain")
    h = healthy("m-plain")
    ok(not h[0], "with microd stopped (SIGSTOP) the health check fails: %s" % h[1][-120:])
    podman("kill", "-s", "CONT", "m-plain")
    podman("rm", "-f", "-t", "0", "m-plain")
    port = run("m-uid", ("--user", "1000170000:0", "--read-only"))
    up = poll(lambda: http(port)[0] == 200, 30)
    h = healthy("m-uid")
    ok(up and h[0], "a random uid with group 0 (1000170000:0) serves and is healthy %s" % h[1])
    podman("rm", "-f", "-t", "0", "m-uid")


def test_port_settings():
    cases = (("flag --port 9090", (), ("--port", "9090"), 9090),
             ("MICROD_PORT=9091", (("MICROD_PORT", "9091"),), (), 9091),
             ("PORT=9092", (("PORT", "9092"),), (), 9092))
    for what, env, cmd, inner in cases:
        port = run("m-port", env=env, cmd=cmd, port=inner)
        up = poll(lambda: http(port)[0] == 200, 30)
        h = healthy("m-port")
        ok(up and h[0], "port set by %s: serving, and the health check is healthy %s" % (what, h[1]))
        podman("rm", "-f", "-t", "0", "m-port")


def k8s_env():
    """The manifest's env, plus what Kubernetes injects for Services named microd, api and redis-cache."""
    doc = [d for d in yaml.safe_load_all(open(os.path.join(ROOT, "dist/kubernetes.yaml"))) if d["kind"] == "Deployment"][0]
    spec = doc["spec"]["template"]["spec"]
    # A variable from the optional Secret (valueFrom) is unset here: no
    # Secret, as in a cluster without a database.
    env = [(e["name"], str(e["value"])) for e in spec["containers"][0].get("env", []) if "value" in e]
    injected = []
    for name, ip, port in (("MICROD", "10.96.0.12", 80), ("API", "10.96.3.4", 8080), ("REDIS_CACHE", "10.96.7.1", 6379)):
        injected += [("%s_SERVICE_HOST" % name, ip), ("%s_SERVICE_PORT" % name, str(port)),
                     ("%s_SERVICE_PORT_HTTP" % name, str(port)),
                     ("%s_PORT" % name, "tcp://%s:%d" % (ip, port)),
                     ("%s_PORT_%d_TCP" % (name, port), "tcp://%s:%d" % (ip, port)),
                     ("%s_PORT_%d_TCP_PROTO" % (name, port), "tcp"),
                     ("%s_PORT_%d_TCP_PORT" % (name, port), str(port)),
                     ("%s_PORT_%d_TCP_ADDR" % (name, port), ip)]
    injected += [("KUBERNETES_SERVICE_HOST", "10.96.0.1"), ("KUBERNETES_SERVICE_PORT", "443"),
                 ("KUBERNETES_PORT", "tcp://10.96.0.1:443")]
    return spec, env, injected


def test_kubernetes_env():
    spec, env, injected = k8s_env()
    ok(spec.get("enableServiceLinks") is False, "the manifest sets enableServiceLinks: false")
    ok(all(n != "MICROD_THREADS" for n, _ in env), "and no MICROD_THREADS: the default reads the CPU limit")
    port = run("m-k8s", ("--read-only",), env=env + injected)
    up = poll(lambda: http(port)[0] == 200, 30)
    h = healthy("m-k8s")
    ok(up and h[0], "started with Kubernetes' service-link variables: serving and healthy %s" % h[1])
    text = logs("m-k8s")
    ok(text.count("MICROD_PORT=tcp://10.96.0.12:80 is a Kubernetes service link") == 1,
       "one warning names the ignored MICROD_PORT")
    rc, out, err = podman("exec", "m-k8s", "microd", "probe", "--url", "http://127.0.0.1:8080/ready")
    ok(rc == 0, "microd probe --url in the same environment: %s" % (out + err).strip())
    probes = dict((kind, spec["containers"][0][kind]["httpGet"]["path"])
                  for kind in ("startupProbe", "livenessProbe", "readinessProbe"))
    for kind, path in sorted(probes.items()):
        rc, out, err = podman("exec", "m-k8s", "microd", "probe", "--url", "http://127.0.0.1:8080" + path)
        ok(rc == 0, "the manifest's %s (%s) passes in the container: %s" % (kind, path, (out + err).strip()))
    podman("rm", "-f", "-t", "0", "m-k8s")
    # A dependency that is away, inside the container's own network: the
    # readiness probe fails, liveness and the image's HEALTHCHECK do not.
    port = run("m-dep", ("--read-only",), env=env + injected + [("MICROD_CHECKS", "db=tcp://127.0.0.1:1"),
                                                                 ("MICROD_CHECK_INTERVAL", "0.2")])
    up = poll(lambda: http(port)[0] == 200, 30)
    why = "check db: not run -> fail: connect to 127.0.0.1:1: Connection refused"
    ok(poll(lambda: why in logs("m-dep"), 10), "the check ran and failed: %s" % why)
    rc, out, err = podman("exec", "m-dep", "microd", "probe", "--url", "http://127.0.0.1:8080" + probes["readinessProbe"])
    ok(up and rc == 1 and "status 503" in err, "MICROD_CHECKS=db=tcp://127.0.0.1:1: the readiness probe fails: %s"
       % (out + err).strip())
    rc, out, err = podman("exec", "m-dep", "microd", "probe", "--url", "http://127.0.0.1:8080" + probes["livenessProbe"])
    h = healthy("m-dep")
    ok(rc == 0 and h[0], "  while the liveness probe passes and the container is healthy %s" % h[1])
    runs = poll(lambda: (lambda m: m and int(m.group(1)) >= 3 and int(m.group(1)))(
        re.search(rb'microd_check_failures_total\{check="db"\} (\d+)', http(port, "/metrics")[1])), 10)
    text = logs("m-dep")
    ok(runs and text.count("check db:") == 1, "  and after %s failed runs its failure is logged once: %s"
       % (runs, [l for l in text.splitlines() if "check db" in l][:3]))
    podman("rm", "-f", "-t", "0", "m-dep")


def test_https():
    """The image with a certificate directory mounted: HTTPS from the
    host with --cacert, microd probe over TLS inside, and a ..data swap in
    the mounted directory served without a restart."""
    import tls  # tests/tls.py: the test CA and the Secret layout
    ca = tls.make_ca()
    a, b = tls.make_leaf("podman-a"), tls.make_leaf("podman-b")
    for path in a + b:
        os.chmod(path, 0o644)  # for the image's uid 65532
    d = tls.secret_dir(a[0], a[1], "mount")
    hp = free_port()
    port = run("m-tls", ("--read-only", "-p", "127.0.0.1:%d:8443" % hp, "-v", "%s:/tls:ro" % d),
               env=(("MICROD_TLS_CERT", "/tls/tls.crt"), ("MICROD_TLS_KEY", "/tls/tls.key")))
    up = poll(lambda: http(port)[0] == 200, 30)
    got = poll(lambda: tls.https_get(hp, ca)[0], 10, 0.1) if up else None
    ok(up and got == 200, "the image with MICROD_TLS_CERT/KEY on a mounted directory: HTTPS 200 from the host (%s)"
       % got)
    rc, out, err = podman("exec", "m-tls", "microd", "probe", "--url", "https://127.0.0.1:8443/livez")
    ok(rc == 0, "  microd probe --url https:// inside the container: exit %d %s" % (rc, (out + err).strip()))
    tls.swap_secret(d, b[0], b[1], "next")
    ok(poll(lambda: tls.served_serial(hp, ca) == tls.serial_of(b[0]), 10, 0.1),
       "  a ..data swap in the mounted directory is served without a restart")
    podman("rm", "-f", "-t", "0", "m-tls")
    shutil.rmtree(tls.DIR, ignore_errors=True)


def ask(port):
    """GET /health on a new connection: (status, answer), with (None,
    b"reset") for a reset before any byte of an answer, which the kernel
    sends to a connection still in the backlog when the listener shuts
    (microd.8, SIGNALS: refused at once), unlike a close without an answer."""
    data = b""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        s.close()
    except ConnectionResetError:
        return None, b"reset" if not data else b"reset after %r" % data[:40]
    except OSError as e:
        return None, str(e).encode()
    m = re.match(rb"HTTP/1\.1 (\d{3})", data)
    return (int(m.group(1)), data) if m else (None, b"no status line: %r" % data[:60])


def load(port, stop, counts):
    while not stop.is_set():
        status, data = ask(port)
        if status == 200 and data.endswith(b'{"status":"ok"}\n'):
            counts["ok"] += 1
        elif status is None and (b"refused" in data or data == b"reset") and counts["stopping"]:
            counts["refused"] += 1
            time.sleep(0.05)
        else:
            counts["cut"] += 1
            counts["why"].append(data[:80])


def test_stop_under_load():
    port = run("m-stop", ("--stop-timeout", "15"), env=(("MICROD_DRAIN_DELAY", "2"),))
    poll(lambda: http(port)[0] == 200, 30)
    stop, counts = threading.Event(), {"ok": 0, "refused": 0, "cut": 0, "why": [], "stopping": False}
    threads = [threading.Thread(target=load, args=(port, stop, counts)) for _ in range(4)]
    for th in threads:
        th.start()
    poll(lambda: counts["ok"] > 200, 20)
    counts["stopping"] = True
    t = time.monotonic()
    rc = podman("stop", "m-stop", timeout=60)[0]
    took = time.monotonic() - t
    stop.set()
    for th in threads:
        th.join()
    code = state("m-stop", ".State.ExitCode")
    ok(rc == 0 and code == "0", "podman stop under load with a 2 s drain delay: exit %s after %.1f s" % (code, took))
    ok(counts["cut"] == 0 and counts["ok"] > 200,
       "no response cut: %d answered, %d refused after the listener closed, %d cut %s" % (
           counts["ok"], counts["refused"], counts["cut"], counts["why"][:3]))
    ok(took >= 2, "the drain delay was served before the exit")
    podman("rm", "-f", "-t", "0", "m-stop")


def test_limits_flood():
    spec = k8s_env()[0]
    limits = spec["containers"][0]["resources"]["limits"]
    mem = limits["memory"]
    mib = int(mem[:-2]) if mem.endswith("Mi") else None
    port = run("m-flood", ("--cpus", str(limits["cpu"]), "--memory", "%dm" % mib, "--read-only"))
    poll(lambda: http(port)[0] == 200, 30)
    text = logs("m-flood")
    m = re.search(r"limits: (\d+) connections over all threads", text)
    ok(m is not None and "from %d MiB cgroup memory limit" % mib in text,
       "the connection limit comes from the %d MiB limit: %s" % (mib, m.group(0) if m else text[-300:]))
    limit = int(m.group(1)) if m else 0
    # A request under way (its head in, its body to come) is never closed
    # to make room: it is answered once its body comes.
    held = socket.create_connection(("127.0.0.1", port), timeout=10)
    held.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    going = held.recv(4096).startswith(b"HTTP/1.1 100 ")
    flood, refused = [], 0
    # Each flood connection fills 8 KiB of headers (what the default
    # --connection-memory admits) and never finishes.
    pad = b"GET /health HTTP/1.1\r\nHost: x\r\n" + (b"X-Pad: " + b"a" * 1000 + b"\r\n") * 8
    for i in range(limit + 600):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(pad)
            flood.append(s)
        except OSError:
            refused += 1
    # Past the limit each new one takes the place of the one that has waited
    # longest for its head, which reads its end: polled for, not waited on.
    ends, deadline, watch = set(), time.monotonic() + 20, select.poll()
    by_fd = {s.fileno(): s for s in flood}
    for fd in by_fd:
        watch.register(fd, select.POLLIN)
    while len(ends) + refused < 600 and time.monotonic() < deadline:
        for fd, _ in watch.poll(500):
            watch.unregister(fd)
            try:
                if by_fd[fd].recv(1) == b"":
                    ends.add(fd)
            except OSError:
                ends.add(fd)
    closed = len(ends)
    fresh = http(port)[0]
    held.sendall(b"{}")
    held.settimeout(10)
    answer = held.recv(4096)
    running = state("m-flood", ".State.Running")
    oom = state("m-flood", ".State.OOMKilled")
    cid = state("m-flood", ".Id")
    peak = None
    for path in ("/sys/fs/cgroup/memory/libpod_parent/libpod-%s/memory.max_usage_in_bytes" % cid,
                 "/sys/fs/cgroup/memory/machine.slice/libpod-%s.scope/memory.max_usage_in_bytes" % cid):
        if os.path.exists(path):
            peak = int(open(path).read()) >> 20
    ok(running == "true" and oom == "false",
       "%d connections (limit %d) of 8 KiB headers: not OOM-killed (peak %s MiB of %d)" % (
           len(flood) + refused, limit, peak, mib))
    ok(closed + refused >= 600, "past the limit each new connection closed one that waited longest for its "
       "head (%d closed, %d refused)" % (closed, refused))
    ok(fresh == 200, "GET /health on a new connection still answers: %s" % fresh)
    ok(going and answer.startswith(b"HTTP/1.1 200"),
       "a request under way from before was never closed: answered once its body came")
    for s in flood:
        s.close()
    held.close()
    podman("rm", "-f", "-t", "0", "m-flood")
    port = run("m-cpu", ("--cpus", "1"))
    poll(lambda: http(port)[0] == 200, 30)
    text = logs("m-cpu")
    ok(re.search(r"1 threads \(epoll; from cgroup CPU quota 100000/100000 us", text) is not None,
       "--cpus 1: one thread, from the cgroup quota: %s" % re.findall(r"\d+ threads \([^)]*\)", text))
    ok("Thread pool is not used" not in text and "Warning" not in text,
       "and libmicrohttpd warns of no pool of one")
    podman("rm", "-f", "-t", "0", "m-cpu")


def main():
    if os.geteuid() != 0:
        ok(False, "the podman suite needs root (debootstrap, podman's cgroups): run make check as root")
        return
    for tool, pkg in (("podman", "podman"), ("runc", "runc"), ("debootstrap", "debootstrap")):
        if shutil.which(tool) is None:
            ok(False, "%s is missing: install the Debian package %s (make deps-test does)" % (tool, pkg))
            return
    configure()
    t = time.monotonic()
    how = base_image()
    if not ok(how is not None, "the base image from tests/debian.sh's tree"):
        return
    note("podman: base image %s (%.0f s)" % (how, time.monotonic() - t))
    if not test_build():
        return
    for test in (test_run_and_health, test_port_settings, test_kubernetes_env, test_https, test_stop_under_load,
                 test_limits_flood):
        t1 = time.monotonic()
        test()
        note("podman: %s %.0f s" % (test.__name__, time.monotonic() - t1))
    note("podman: suite took %.0f s (base %s)" % (time.monotonic() - T0, how))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
    sys.exit(done())
