#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# dist.py -- the deployment files in dist/ against the binary they ship (TAP)
#
# No Docker engine runs here, so the image is checked as far as the machine
# allows: dist/rootfs.sh (the Dockerfile's build step) lays out the image's
# file system from the local build, and microd must start and answer its own
# probe inside a chroot of exactly that tree. The Kubernetes manifest is
# parsed, and its probe paths are asked of a real microd.
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

import yaml

from server import BIN, start_microd, stop_microd
from tap import done, ok, skip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"




def start_dist(args, env, root=None):
    """microd (in a chroot when root is set, as the image's USER)."""
    cmd = ([BIN] if root is None else [CHROOT, "--userspec=65532:65532", root, "/usr/bin/microd"]) + args
    return start_microd(cmd, env)


def get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def ldd_libs(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "=>" and parts[2].startswith("/"):
            libs.add(parts[2])
        elif parts and parts[0].startswith("/"):
            libs.add(parts[0])
    return libs


def test_image():
    dockerfile = open(os.path.join(ROOT, "dist/Dockerfile")).read()
    stages = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    ok(len(stages) >= 2 and stages[-1] == "scratch", "Dockerfile: multi-stage, final stage FROM scratch")
    final = dockerfile[dockerfile.rindex("\nFROM "):]
    ok(re.search(r"^COPY --from=build /rootfs/ /$", final, re.M) is not None,
       "the final stage copies only the laid-out rootfs")
    ok("dist/rootfs.sh build/microd /rootfs" in dockerfile, "the rootfs comes from dist/rootfs.sh")
    user = re.search(r"^USER\s+(\d+)(?::(\d+))?$", final, re.M)
    ok(user is not None and int(user.group(1)) != 0, "runs as a numeric non-root user")
    ok(re.search(r"^EXPOSE 8080 8443$", final, re.M) is not None, "EXPOSE 8080 8443 (HTTP, and HTTPS with a certificate)")
    ok(re.search(r"^STOPSIGNAL SIGTERM$", final, re.M) is not None, "STOPSIGNAL SIGTERM")
    ok(re.search(r'^\s*CMD \["microd", "probe"\]$', final, re.M) is not None,
       'HEALTHCHECK CMD ["microd", "probe"]')

    root = tempfile.mkdtemp(prefix="microd-rootfs-")
    os.chmod(root, 0o755)  # an image's / is world-searchable
    try:
        subprocess.run(["sh", os.path.join(ROOT, "dist/rootfs.sh"), BIN, root], check=True)
        libs = ldd_libs(BIN)
        missing = [lib for lib in libs if not os.path.isfile(root + lib)]
        ok(not missing, "every library ldd lists (%d) is in the image tree%s"
           % (len(libs), "" if not missing else ": missing " + " ".join(missing)))
        files = set()
        for d, _, names in os.walk(root):
            files.update(os.path.join(d, n)[len(root):] for n in names)
        ok(files == libs | {"/usr/bin/microd"}, "and nothing else but /usr/bin/microd (%d files)" % len(files))
        if os.geteuid() != 0 or "sanitize" in BIN:
            skip("chroot needs root and an unsanitised build")
            skip("chroot needs root and an unsanitised build")
            skip("chroot needs root and an unsanitised build")
            return
        env = {"PATH": "/usr/bin", "MICROD_BIND": "127.0.0.1", "PORT": "0"}
        proc, port, log = start_dist([], env, root=root)
        ok(port is not None, "microd starts as uid 65532 inside a chroot of exactly that tree")
        if port is None:
            stop_microd(proc, log)
            return
        probe = subprocess.run([CHROOT, "--userspec=65532:65532", root, "/usr/bin/microd", "probe", "--port", str(port)],
                               env=env, capture_output=True, text=True)
        ok(probe.returncode == 0, "and its HEALTHCHECK command passes there: %s" % probe.stderr.strip())
        ok(stop_microd(proc, log) == 0, "and it stops with status 0 on SIGTERM")
    finally:
        shutil.rmtree(root)


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_kubernetes():
    docs = [d for d in yaml.safe_load_all(open(os.path.join(ROOT, "dist/kubernetes.yaml"))) if d]
    kinds = {d["kind"]: d for d in docs}
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        ok(kind in kinds, "kubernetes.yaml has a %s" % kind)
    dep = kinds["Deployment"]
    ok(dep["spec"]["replicas"] >= 2, "2+ replicas")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = env_of(c)
    port = int(env.get("MICROD_PORT") or env.get("PORT") or 8080)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    ok(ports.get("http") == port, "containerPort %s is the port microd listens on (%d)" % (ports.get("http"), port))

    probes = {}
    for name in ("startupProbe", "livenessProbe", "readinessProbe"):
        p = c.get(name, {}).get("httpGet", {})
        probes[name] = p.get("path")
        ok(p.get("port") in ("http", port), "%s targets the http port" % name)
    ok(probes == {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"},
       "liveness and startup on /livez, readiness on /readyz")

    delay = float(env.get("MICROD_DRAIN_DELAY", 0))
    timeout = float(env.get("MICROD_SHUTDOWN_TIMEOUT", 10))
    ok(pod["terminationGracePeriodSeconds"] > delay + timeout,
       "terminationGracePeriodSeconds %s > drain delay %g + shutdown timeout %g"
       % (pod["terminationGracePeriodSeconds"], delay, timeout))
    psc, sc = pod.get("securityContext", {}), c.get("securityContext", {})
    ok(psc.get("runAsNonRoot") and psc.get("runAsUser", 0) != 0 and sc.get("runAsNonRoot"), "runs as non-root")
    ok(sc.get("readOnlyRootFilesystem") is True, "read-only root file system")
    ok(sc.get("capabilities", {}).get("drop") == ["ALL"], "all capabilities dropped")
    ok(sc.get("allowPrivilegeEscalation") is False, "no privilege escalation")
    res = c.get("resources", {})
    ok(all(k in res.get(w, {}) for w in ("requests", "limits") for k in ("cpu", "memory")),
       "resource requests and limits for cpu and memory")
    svc = kinds["Service"]["spec"]
    ok(svc["ports"][0]["targetPort"] in ("http", port), "the Service targets the http port")
    ok(kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"],
       "the HPA scales the Deployment")

    init = pod.get("initContainers", [{}])[0]
    ok(init.get("image") == c["image"] and init.get("args") == ["migrate"] and "command" not in init,
       "an init container runs microd migrate from the same image")
    url = [e for e in init.get("env", []) if e["name"] == "DATABASE_URL"]
    ref = url[0].get("valueFrom", {}).get("secretKeyRef", {}) if url else {}
    ok(ref.get("name") and ref.get("key") and ref.get("optional") is True,
       "  its DATABASE_URL from a Secret, optional: %s" % ref)
    main_url = [e for e in c.get("env", []) if e["name"] == "DATABASE_URL"]
    ok(main_url and main_url[0].get("valueFrom") == url[0].get("valueFrom"),
       "  and microd's own DATABASE_URL comes from the same Secret: %s" % main_url)
    ok(init.get("securityContext") == sc and init.get("resources") == res,
       "  with the main container's security context and resources")
    init_env = {k: v for k, v in os.environ.items()
                if k not in ("MICROD_DATABASE", "DATABASE_URL") and not k.startswith("PG")}
    init_env.update({k: v for k, v in env_of(init).items() if v is not None})
    r = subprocess.run([BIN] + init["args"], env=init_env, capture_output=True, text=True, timeout=30)
    ok(r.returncode == 0 and "nothing to migrate" in r.stderr,
       "  without the Secret it exits 0: nothing to migrate (%d %s)" % (r.returncode, r.stderr.strip()))

    ok(pod.get("enableServiceLinks") is False, "enableServiceLinks: false")
    ok("MICROD_THREADS" not in env, "no MICROD_THREADS: the default reads the CPU limit")

    # The manifest's own settings, asked of a real microd (the port alone is
    # left to the kernel: tests use no fixed ports), with the variables
    # Kubernetes injects into a pod started after the Service microd (and a
    # Service api) exists, in case service links are turned back on.
    run_env = dict(os.environ)
    run_env.update({k: v for k, v in env.items() if v is not None})
    for name, ip, sport in (("MICROD", "10.96.0.12", 80), ("API", "10.96.3.4", 8080)):
        run_env.update({"%s_SERVICE_HOST" % name: ip, "%s_SERVICE_PORT" % name: str(sport),
                        "%s_SERVICE_PORT_HTTP" % name: str(sport), "%s_PORT" % name: "tcp://%s:%d" % (ip, sport),
                        "%s_PORT_%d_TCP" % (name, sport): "tcp://%s:%d" % (ip, sport),
                        "%s_PORT_%d_TCP_PROTO" % (name, sport): "tcp",
                        "%s_PORT_%d_TCP_PORT" % (name, sport): str(sport),
                        "%s_PORT_%d_TCP_ADDR" % (name, sport): ip})
    proc, got, log = start_dist(["--bind", "127.0.0.1", "--port", "0"], run_env)
    ok(got is not None, "microd starts with the manifest's environment and Kubernetes' service links")
    if got is None:
        stop_microd(proc, log)
        return
    for name, path in sorted(probes.items()):
        ok(get(got, path) == 200, "%s path %s answers 200" % (name, path))
    probe = subprocess.run([BIN, "probe", "--url", "http://127.0.0.1:%d/health" % got], env=run_env,
                           capture_output=True, text=True, timeout=10)
    ok(probe.returncode == 0, "microd probe --url in that environment: exit %d %s" % (
        probe.returncode, probe.stderr.strip()))
    probe = subprocess.run([BIN, "probe", "--port", str(got)], env=run_env, capture_output=True, text=True,
                           timeout=10)
    ok(probe.returncode == 0, "microd probe --port in that environment: exit %d %s" % (
        probe.returncode, probe.stderr.strip()))
    # No --port: the service link in MICROD_PORT is passed over for PORT
    # (0 here, for a free port), with one warning.
    proc2, got2, log2 = start_dist(["--bind", "127.0.0.1"], dict(run_env, PORT="0"))
    text = open(log2).read()
    ok(got2 is not None and text.count("MICROD_PORT=tcp://10.96.0.12:80 is a Kubernetes service link") == 1,
       "without --port: PORT applies, and one warning names the ignored MICROD_PORT")
    stop_microd(proc2, log2)
    t0 = time.monotonic()
    status = stop_microd(proc, log)
    ok(status == 0 and time.monotonic() - t0 < pod["terminationGracePeriodSeconds"],
       "a SIGTERM with the manifest's drain settings exits 0 within the grace period (%.1f s)"
       % (time.monotonic() - t0))


def test_kubernetes_https():
    """The HTTPS patch: a Secret volume (no subPath) whose files the env
    names, served by a real microd with certificates made here, the mount
    moved to a temporary directory."""
    import tls  # tests/tls.py: the test CA
    patch = yaml.safe_load(open(os.path.join(ROOT, "dist/kubernetes-https.yaml")))
    pod = patch["spec"]["template"]["spec"]
    c = pod["containers"][0]
    mount = [m for m in c["volumeMounts"] if m["name"] == "tls"][0]
    vol = [v for v in pod["volumes"] if v["name"] == "tls"][0]
    ok("secret" in vol and "subPath" not in mount and mount.get("readOnly") is True,
       "kubernetes-https.yaml mounts the Secret %s as a directory, read-only, without subPath"
       % vol.get("secret", {}).get("secretName"))
    env = env_of(c)
    ok(env.get("MICROD_TLS_CERT") == mount["mountPath"] + "/tls.crt"
       and env.get("MICROD_TLS_KEY") == mount["mountPath"] + "/tls.key",
       "  MICROD_TLS_CERT and MICROD_TLS_KEY name the Secret's tls.crt and tls.key")
    ok([p["containerPort"] for p in c["ports"] if p["name"] == "https"] == [int(env["MICROD_TLS_PORT"])],
       "  the https container port is MICROD_TLS_PORT")
    ca = tls.make_ca()
    crt, key = tls.make_leaf("k8s")
    d = tls.secret_dir(crt, key, "mount")
    run_env = dict(os.environ)
    run_env.update({k: v.replace(mount["mountPath"], d) for k, v in env.items()})
    run_env["MICROD_TLS_PORT"] = "0"
    proc, got, log = start_dist(["--bind", "127.0.0.1", "--port", "0"], run_env)
    tport = got and tls.poll(lambda: tls.tls_port(log), 10, 0.05)
    ok(tport and tls.https_get(tport, ca)[0] == 200, "  microd with that environment serves HTTPS from the mount")
    b = tls.make_leaf("k8s-next")
    tls.swap_secret(d, b[0], b[1], "next")
    ok(tport and tls.poll(lambda: tls.served_serial(tport, ca) == tls.serial_of(b[0]), 10, 0.05),
       "  and a kubelet-style ..data swap of the Secret is served")
    stop_microd(proc, log)
    shutil.rmtree(tls.DIR, ignore_errors=True)


def main():
    test_image()
    test_kubernetes()
    test_kubernetes_https()
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
