#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# vm.py -- microd under a real systemd: PID 1 of a Debian 12 VM (TAP)
#
# The VM boots the tree tests/debian.sh makes (as an ext4 image cached in
# build/engines/) under qemu in software emulation, with -snapshot so no run
# changes the image. It has qemu's user network in restricted mode: nothing
# inside reaches out; the host reaches in only through two ports forwarded
# to 127.0.0.1 (ssh, and the service's 8080). The checks do what the README
# and dist/README.md tell a user to do: make install, systemctl enable --now microd.socket,
# then socket activation, Type=notify, the sandbox, journald, the watchdog,
# restarts under load, a stop with a request in flight, and a bad setting.
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

from server import free_port, http_once as http, poll, recv_all
from tap import done, ok

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The checkout installed in the VM (another one, to see how it fared).
SRC = os.path.abspath(os.environ.get("MICROD_VM_SRC", ROOT))
ENGINES = os.path.join(ROOT, "build", "engines")
TREE = os.path.join(ENGINES, "debian")
IMAGE = os.path.join(ENGINES, "vm.img")
KEY = os.path.join(ENGINES, "vm_key")
T0 = time.monotonic()


def note(msg):
    print("# " + msg, file=sys.stderr, flush=True)


def make_image():
    """The cached image, made from the shared tree on first use and again
    when the tree was made again (its .done is newer)."""
    t = time.monotonic()
    if os.path.exists(IMAGE) and os.path.getmtime(IMAGE) >= os.path.getmtime(TREE + ".done"):
        return "cached", 0.0
    if not os.path.exists(KEY):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", KEY], check=True)
    # The key goes into the image alone, not into the shared tree.
    stage = IMAGE + ".root"
    os.makedirs(stage, exist_ok=True)
    os.makedirs(os.path.join(stage, "root/.ssh"), exist_ok=True)
    shutil.copy(KEY + ".pub", os.path.join(stage, "root/.ssh/authorized_keys"))
    tmp = IMAGE + ".tmp"
    subprocess.run(["truncate", "-s", "4G", tmp], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", TREE, tmp], check=True)
    # debugfs writes the key file into the fresh file system.
    cmds = "mkdir /root/.ssh\nwrite %s /root/.ssh/authorized_keys\nsif /root/.ssh/authorized_keys mode 0100600\n" % (
        os.path.join(stage, "root/.ssh/authorized_keys"))
    subprocess.run(["debugfs", "-w", "-f", "-", tmp], input=cmds, text=True, check=True, capture_output=True)
    shutil.rmtree(stage)
    os.rename(tmp, IMAGE)
    return "built", time.monotonic() - t


class VM:
    def __init__(self):
        kernel = sorted(f for f in os.listdir(os.path.join(TREE, "boot")) if f.startswith("vmlinuz-"))[-1]
        initrd = kernel.replace("vmlinuz-", "initrd.img-")
        self.ssh_port, self.http_port = free_port(), free_port()
        self.console = open(os.path.join(ENGINES, "vm-console.log"), "w")
        self.proc = subprocess.Popen(
            ["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-cpu", "max", "-smp", "2", "-m", "1024",
             "-nographic", "-no-reboot", "-snapshot",
             "-kernel", os.path.join(TREE, "boot", kernel), "-initrd", os.path.join(TREE, "boot", initrd),
             "-append", "root=/dev/vda rw console=ttyS0 panic=-1",
             "-drive", "file=%s,format=raw,if=virtio" % IMAGE,
             "-netdev", "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22,hostfwd=tcp:127.0.0.1:%d-:8080" % (
                 self.ssh_port, self.http_port),
             "-device", "virtio-net-pci,netdev=n0"],
            stdin=subprocess.DEVNULL, stdout=self.console, stderr=subprocess.STDOUT)

    def ssh(self, cmd, timeout=120, input=None):
        r = subprocess.run(
            ["ssh", "-q", "-i", KEY, "-p", str(self.ssh_port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
             "root@127.0.0.1", cmd],
            input=input, capture_output=True, timeout=timeout)
        return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")

    def out(self, cmd, timeout=120):
        return self.ssh(cmd, timeout)[1].strip()

    def wait_ssh(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if self.ssh("true", timeout=15)[0] == 0:
                    return True
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.5)
        return False

    def stop(self):
        try:
            self.ssh("systemctl poweroff", timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.console.close()


def show(vm, prop, unit="microd.service"):
    return vm.out("systemctl show -p %s --value %s" % (prop, unit))


def journal(vm, args=""):
    return vm.out("journalctl -q --no-pager -u microd.service %s" % args)


def install(vm):
    src = subprocess.run(["git", "-C", SRC, "ls-files", "-co", "--exclude-standard"],
                         capture_output=True, text=True, check=True).stdout.split()
    src = [f for f in src if os.path.isfile(os.path.join(SRC, f))]
    tar = subprocess.run(["tar", "-C", SRC, "-c"] + src, capture_output=True, check=True).stdout
    rc, _, err = vm.ssh("rm -rf /root/microd && mkdir /root/microd && tar -x -C /root/microd", input=tar)
    ok(rc == 0, "the checkout is copied into the VM (%d files)%s" % (len(src), err[-200:]))
    rc, out, err = vm.ssh("cd /root/microd && make COMMIT=vm install", timeout=600)
    ok(rc == 0 and os.path.basename("/usr/local/bin/microd") in out,
       "make install builds and installs in the VM%s" % ("" if rc == 0 else ": " + (out + err)[-400:]))
    rc, out, err = vm.ssh("systemctl daemon-reload && systemctl enable --now microd.socket")
    ok(rc == 0, "systemctl enable --now microd.socket%s" % ("" if rc == 0 else ": " + err[-300:]))


def test_activation(vm):
    ok(show(vm, "ActiveState", "microd.socket") == "active" and show(vm, "ActiveState") == "inactive",
       "the socket listens and the service is not started yet")
    t = time.monotonic()
    status, body = http(vm.http_port)
    ok(status == 200, "the first connection starts microd.service and gets 200 from /health (%s, %.1f s)" %
       (status, time.monotonic() - t))
    ok(show(vm, "ActiveState") == "active", "the service is active")
    status_text = show(vm, "StatusText")
    ok(re.match(r"serving on \S+, \d+ threads$", status_text) is not None,
       "Type=notify: STATUS= says what it serves: %s" % status_text)
    # systemd leaves "activating" for "active" only on READY=1 (the log's
    # own lines go through a writer thread, so their order in the journal
    # against systemd's proves nothing).
    start = int(show(vm, "ExecMainStartTimestampMonotonic") or 0)
    active = int(show(vm, "ActiveEnterTimestampMonotonic") or 0)
    ok(show(vm, "Type") == "notify" and show(vm, "NotifyAccess") == "main" and 0 < start < active,
       "Type=notify: active %.1f ms after the process started, on READY=1" % ((active - start) / 1000))
    lines = journal(vm)
    ok("socket passed by the service manager" in lines, "microd serves the socket systemd passed")


def test_sandbox(vm):
    score = vm.out("systemd-analyze security microd.service | tail -n 1")
    m = re.search(r"Overall exposure level for microd.service: (\d+\.\d+) (\w+)", score)
    ok(m is not None and m.group(1, 2) == ("0.2", "SAFE"),
       "online systemd-analyze security of the running unit: 0.2 SAFE, as offline (%s)" % score)
    # Blocked system calls made fatal: SIGSYS instead of EPERM.
    default = show(vm, "SystemCallErrorNumber")
    vm.ssh("mkdir -p /etc/systemd/system/microd.service.d && printf '[Service]\\nSystemCallErrorNumber=\\n' "
           "> /etc/systemd/system/microd.service.d/strict.conf && systemctl daemon-reload && "
           "systemctl restart microd.service")
    strict = show(vm, "SystemCallErrorNumber")
    ok(default != strict, "the drop-in makes blocked calls fatal (SystemCallErrorNumber %r, was %r)" % (
        strict, default))
    since = vm.out("date +%s.%N")
    results = [http(vm.http_port, p)[0] for p in ("/health", "/ready", "/version", "/metrics")]
    results.append(http(vm.http_port, "/echo", "POST", b'{"a":[1,2,3]}')[0])
    results.append(http(vm.http_port, "/nope")[0])
    ok(results == [200, 200, 200, 200, 200, 404],
       "with blocked calls fatal every route answers: %s" % results)
    vm.ssh("systemctl stop microd.service")
    ok(show(vm, "Result") == "success" and show(vm, "ExecMainStatus") == "0",
       "and a drain and stop exit 0 (Result=%s, status %s)" % (show(vm, "Result"), show(vm, "ExecMainStatus")))
    log = vm.out("journalctl -q --no-pager --since @%s" % since)
    kernel = vm.out("journalctl -q --no-pager -k | grep -c 'type=1326' || true")
    ok("SIGSYS" not in log and "status=31" not in log and kernel in ("", "0"),
       "no SIGSYS and no seccomp audit record (%s)" % kernel)
    ok("Operation not permitted" not in journal(vm) and "EPERM" not in journal(vm),
       "no EPERM in microd's journal")
    vm.ssh("rm -r /etc/systemd/system/microd.service.d && systemctl daemon-reload")


def test_journal(vm):
    # A warning: Kubernetes-style MICROD_PORT in the settings file.
    vm.ssh("echo MICROD_PORT=tcp://10.0.0.1:80 > /etc/default/microd && systemctl restart microd.service")
    http(vm.http_port)
    warn = vm.out("journalctl -q --no-pager -u microd.service -o json --output-fields=PRIORITY,MESSAGE "
                  "| grep -m1 'service link'")
    ok('"PRIORITY":"4"' in warn, "journald: a warning at priority 4: %s" % warn[-160:])
    vm.ssh("rm /etc/default/microd && systemctl restart microd.service")
    http(vm.http_port)
    pid = show(vm, "MainPID")
    rc, _, err = vm.ssh("systemctl reload microd.service")
    ok(rc == 0 and show(vm, "MainPID") == pid and show(vm, "ActiveState") == "active"
       and poll(lambda: "SIGHUP: nothing to reload" in journal(vm), 10, 0.5),
       "systemctl reload: SIGHUP to the same process, which stays active (%s)" % err.strip()[-200:])
    prios = vm.out("journalctl -q --no-pager -u microd.service -o json --output-fields=PRIORITY,MESSAGE "
                   "| grep -m1 'listening on'")
    ok('"PRIORITY":"6"' in prios, "journald: info lines at priority 6: %s" % prios[:160])
    ok(re.search(r'"MESSAGE":"<\d>', prios) is None and "ts=" not in prios and '"ts"' not in prios.replace(
        '"__', ''), "the prefix is read by journald, and lines carry no timestamp of their own")


def test_cgroup_limits(vm):
    # cgroup v2 for real: the unit's own CPU quota and memory limit.
    since = vm.out("date +%s.%N")
    vm.ssh("mkdir -p /etc/systemd/system/microd.service.d && printf '[Service]\\nMemoryMax=64M\\nCPUQuota=100%%\\n' "
           "> /etc/systemd/system/microd.service.d/limits.conf && systemctl daemon-reload && "
           "systemctl restart microd.service")
    http(vm.http_port)
    log = vm.out("journalctl -q --no-pager -o cat -u microd.service --since @%s" % since)
    where = "/sys/fs/cgroup/system.slice/microd.service"
    ok("1 threads (epoll; from cgroup CPU quota 100000/100000 us in %s)" % where in log,
       "CPUQuota=100%%: 1 thread, from cgroup v2 cpu.max: %s" % re.findall(r"\d+ threads \([^)]*\)", log))
    ok("limits: 1820 connections" in log and "connection limit from 64 MiB cgroup memory limit in %s" % where in log,
       "MemoryMax=64M: 1820 connections, from cgroup v2 memory.max: %s" % re.findall(
           r"limits: \d+ connections|connection limit from [^\"]*", log))
    vm.ssh("rm -r /etc/systemd/system/microd.service.d && systemctl daemon-reload && systemctl restart microd.service")


def pool_ran_at(vm):
    """When the pool check last ran, from /livez/pool?verbose (or None)."""
    st, data = http(vm.http_port, "/livez/pool?verbose")
    m = re.search(rb'"time":"([^"]+)"', data) if st == 200 else None
    return m and m.group(1).decode()


def test_watchdog(vm):
    # The pool check's own thread would run once an hour: under systemd
    # its runs are the watchdog's rounds (every 5 s of WatchdogSec=10).
    vm.ssh("echo MICROD_CHECK_INTERVAL=3600 > /etc/default/microd && systemctl restart microd.service")
    http(vm.http_port)
    first = poll(lambda: pool_ran_at(vm), 10, 0.5)
    pid = show(vm, "MainPID")
    restarts = int(show(vm, "NRestarts"))
    ok(pid != "0" and show(vm, "WatchdogUSec") in ("10s", "10000000"),
       "WatchdogSec=10 on the running service (pid %s)" % pid)
    # Healthy: not restarted over at least 20 s of watching.
    t = time.monotonic()
    while time.monotonic() - t < 21:
        time.sleep(1)
    ok(show(vm, "MainPID") == pid and int(show(vm, "NRestarts")) == restarts,
       "a healthy microd is not restarted over 21 s")
    later = pool_ran_at(vm)
    ok(first and later and later > first and http(vm.http_port, "/livez")[0] == 200,
       "the watchdog's rounds are /livez's pool check (ran at %s, then %s, with MICROD_CHECK_INTERVAL=3600)"
       % (first, later))
    vm.ssh("rm /etc/default/microd")
    vm.ssh("kill -STOP %s" % pid)
    new = poll(lambda: (show(vm, "MainPID") not in ("0", pid) and show(vm, "ActiveState") == "active"
                        and show(vm, "MainPID")), 45, 1)
    log = journal(vm)
    ok(bool(new) and "Watchdog timeout" in log, "a stopped process misses the watchdog and is replaced (%s)" % new)
    ok("ABRT" in log, "it is killed with SIGABRT: %s" % "; ".join(
        line for line in log.splitlines() if "ABRT" in line or "Watchdog" in line)[-300:])
    ok(http(vm.http_port)[0] == 200 and int(show(vm, "NRestarts")) == restarts + 1,
       "restarted once, and serving")


def load(port, stop, counts):
    while not stop.is_set():
        status, why = http(port, timeout=15)
        counts["ok" if status == 200 else "failed"] += 1
        if status != 200 and len(counts["why"]) < 5:
            counts["why"].append("%s %s" % (status, why))


def test_restart_under_load(vm):
    http(vm.http_port)
    stop, counts = threading.Event(), {"ok": 0, "failed": 0, "why": []}
    threads = [threading.Thread(target=load, args=(vm.http_port, stop, counts)) for _ in range(4)]
    for th in threads:
        th.start()
    poll(lambda: counts["ok"] >= 20, 30)
    before = counts["ok"]
    rcs = []
    for _ in range(2):
        rcs.append(vm.ssh("systemctl restart microd.service")[0])
        mark = counts["ok"]
        poll(lambda: counts["ok"] >= mark + 20, 30)
    stop.set()
    for th in threads:
        th.join()
    ok(rcs == [0, 0] and counts["ok"] > before and counts["failed"] == 0,
       "systemctl restart twice under load: %d requests, %d failed %s" % (
           counts["ok"] + counts["failed"], counts["failed"], counts["why"]))


def test_stop_in_flight(vm):
    http(vm.http_port)
    body = b'{"in":"flight"}'
    s = socket.create_connection(("127.0.0.1", vm.http_port), timeout=30)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body[:5])
    stopper = subprocess.Popen(
        ["ssh", "-q", "-i", KEY, "-p", str(vm.ssh_port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "root@127.0.0.1", "systemctl stop microd.service"])
    draining = poll(lambda: show(vm, "StatusText").startswith(("draining", "stopping")), 20)
    s.sendall(body[5:])
    data = recv_all(s)
    s.close()
    stopper.wait(60)
    ok(draining, "systemctl stop begins the drain while the request is in flight")
    ok(data.startswith(b"HTTP/1.1 200") and data.rstrip(b"\n").endswith(body),
       "the request completes: %r" % data[:40])
    ok(stopper.returncode == 0 and show(vm, "Result") == "success" and show(vm, "ExecMainStatus") == "0",
       "and microd exits 0 (Result=%s, status %s)" % (show(vm, "Result"), show(vm, "ExecMainStatus")))


def test_bad_setting(vm):
    vm.ssh("systemctl stop microd.service; echo MICROD_THREADS=0 > /etc/default/microd")
    since = vm.out("date +%s.%N")
    status, why = http(vm.http_port, timeout=20)
    poll(lambda: show(vm, "ActiveState") in ("failed", "inactive"), 20)
    err = vm.out("journalctl -q --no-pager -u microd.service -p err --since @%s" % since)
    ok("MICROD_THREADS: invalid value '0'" in err, "the error is in journalctl -p err: %s" % err[-200:])
    ok(show(vm, "ActiveState", "microd.socket") == "active",
       "the socket keeps listening (%s, %s)" % (show(vm, "ActiveState", "microd.socket"),
                                                 show(vm, "Result", "microd.socket")))
    starts = vm.out("journalctl -q --no-pager -u microd.service --since @%s | grep -c 'MICROD_THREADS' || true"
                    % since)
    ok(starts == "1", "it failed once, not in a loop (%s error lines)" % starts)
    ok(status == 503 and b"MICROD_THREADS" in why, "the connection that started it gets 503 naming the setting")
    # Without StartLimitIntervalSec=0 the fifth start in 10 s would fail
    # microd.socket (service-start-limit-hit) and close the port.
    statuses = [http(vm.http_port, timeout=20)[0] for _ in range(6)]
    ok(statuses == [503] * 6 and show(vm, "ActiveState", "microd.socket") == "active",
       "six more clients in a row: each gets 503, the socket stays up (%s, %s)" % (
           statuses, show(vm, "Result", "microd.socket")))
    vm.ssh("rm /etc/default/microd")
    status, _ = http(vm.http_port, timeout=20)
    ok(status == 200, "with the file fixed the next connection starts microd: nothing to reset (%s)" % status)


def main():
    if os.geteuid() != 0:
        ok(False, "the VM suite needs root (debootstrap and the image it makes): run make check as root")
        return
    for tool, pkg in (("qemu-system-x86_64", "qemu-system-x86"), ("debootstrap", "debootstrap"),
                      ("ssh", "openssh-client"), ("mkfs.ext4", "e2fsprogs"), ("debugfs", "e2fsprogs")):
        if shutil.which(tool) is None:
            ok(False, "%s is missing: install the Debian package %s (make deps-test does)" % (tool, pkg))
            return
    os.makedirs(ENGINES, exist_ok=True)
    if subprocess.run(["sh", os.path.join(ROOT, "tests/debian.sh"), TREE]).returncode != 0:
        ok(False, "tests/debian.sh could not make the Debian tree")
        return
    how, took = make_image()
    note("vm: image %s (%.0f s)" % (how, took))
    t = time.monotonic()
    vm = VM()
    try:
        up = vm.wait_ssh(300)
        ok(up, "the VM boots to ssh with systemd as PID 1 (%.0f s)" % (time.monotonic() - t))
        if not up:
            return
        ok(vm.out("ps -o comm= -p 1") == "systemd", "PID 1 is systemd")
        note("vm: booted in %.0f s" % (time.monotonic() - t))
        install(vm)
        for test in (test_activation, test_sandbox, test_journal, test_cgroup_limits,
                     test_watchdog, test_restart_under_load, test_stop_in_flight,
                     test_bad_setting):
            t1 = time.monotonic()
            test(vm)
            note("vm: %s %.0f s" % (test.__name__, time.monotonic() - t1))
    finally:
        vm.stop()
        note("vm: suite took %.0f s (image %s)" % (time.monotonic() - T0, how))


if __name__ == "__main__":
    main()
    sys.exit(done())
