#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# otel.py -- traces over OTLP/HTTP JSON against a receiver that decodes them
# with the OpenTelemetry JavaScript project's protobuf types
# (tests/otlp/receiver.js; make otlp-deps installs them): 1,000 requests
# with a traceparent give 1,000 SERVER spans matching the access log; names,
# kinds, parents, attributes, resource; CLIENT spans; the samplers; the
# receiver answering 503 with Retry-After, 400, slowly, or never; the
# settings --check-config shows, grpc refused, http/protobuf warned (TAP)
#
# Every wait polls with a deadline.
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request

from server import BIN, poll, start_microd, stop_microd, wait_exit
from tap import done, ok, skip

HOOKS = os.path.abspath(os.environ.get("MICROD_HOOKS_BIN", "build/hooks/microd"))
MODULES = os.path.abspath(os.environ.get("MICROD_OTLP_MODULES", "build/otlp/node_modules"))
RECEIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "otlp", "receiver.js")
TP_PARENT = "b7ad6b7169203331"


class Receiver:
    def __init__(self):
        self.proc = subprocess.Popen(["node", RECEIVER, MODULES], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"listening (\d+)", line)
        self.port = int(m.group(1)) if m else None
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("receiver: %s %s" % (line, self.proc.stderr.read()))
        self.endpoint = "http://127.0.0.1:%d" % self.port

    def call(self, path, body=None):
        req = urllib.request.Request(self.endpoint + path, method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def mode(self, **kw):
        self.call("/control", kw)

    def received(self):
        return self.call("/received")

    def spans(self):
        """Every span received (decoded), with its export's resource."""
        out = []
        for e in self.received():
            for rs in (e["body"] or {}).get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    for s in ss.get("spans", []):
                        out.append((s, rs.get("resource", {}), ss.get("scope", {})))
        return out

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        wait_exit(self.proc, 5)


def attrs(obj):
    """An attribute list as {key: value}, values as their Python type."""
    out = {}
    for a in obj.get("attributes", []):
        v = a["value"]
        out[a["key"]] = v.get("stringValue", v.get("intValue"))
    return out


def env_for(rcv, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MICROD_"))}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = rcv.endpoint
    env.update({k: str(v) for k, v in extra.items()})
    return env


def microd(rcv, *args, binary=HOOKS, **env):
    return start_microd([binary, "--port", "0", "--bind", "127.0.0.1", "--log-format", "json"]
                        + list(args), env_for(rcv, **env))


def traceparent(i, flags="01"):
    return "00-%032x-%s-%s" % (0x0af7651916cd43dd8448eb2100000000 + i, TP_PARENT, flags)


def get(conn, path, headers=None):
    t0 = time.monotonic()
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    return r.status, body, time.monotonic() - t0


def metric(port, name):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    status, body, _ = get(c, "/metrics")
    c.close()
    m = re.search(r"^%s (\d+)$" % re.escape(name), body.decode(), re.M)
    return int(m.group(1)) if m else None


def access_log(log):
    out = []
    with open(log) as f:
        for line in f:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if j.get("msg") == "request":
                out.append(j)
    return out


def log_text(log):
    with open(log) as f:
        return f.read()


def test_thousand(rcv):
    """1,000 requests with a traceparent: 1,000 SERVER spans."""
    b_spans, b_recv = len(rcv.spans()), len(rcv.received())
    proc, port, log = microd(rcv, OTEL_SERVICE_NAME="otel-test",
                             OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test,team=a%20b",
                             OTEL_BSP_SCHEDULE_DELAY=100,
                             OTEL_EXPORTER_OTLP_HEADERS="x-api-key=s%3Dcret")
    if not ok(port is not None, "microd starts with traces on"):
        return
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    statuses = set()
    for i in range(1000):
        status, _, _ = get(conn, "/version", {"traceparent": traceparent(i), "User-Agent": "otel-test/1"})
        statuses.add(status)
    ok(statuses == {200}, "1,000 requests with a traceparent: all 200")
    spans = poll(lambda: (lambda s: s if len(s) >= 1000 else None)(rcv.spans()[b_spans:]), 15, 0.1) \
        or rcv.spans()[b_spans:]
    ok(len(spans) == 1000, "1,000 SERVER spans arrive, decoded by protobufjs (got %d)" % len(spans))
    errors = [e["error"] for e in rcv.received()[b_recv:] if e["error"]]
    ok(not errors, "the receiver's decoder took every export whole: %s" % errors[:2])
    want_ids = {"%032x" % (0x0af7651916cd43dd8448eb2100000000 + i) for i in range(1000)}
    ok({s["traceId"] for s, _, _ in spans} == want_ids, "  each request's trace id, once")
    ok(all(s["name"] == "GET /version" for s, _, _ in spans), "  named GET /version")
    ok(all(s["kind"] == 2 for s, _, _ in spans), "  kind SERVER (2)")
    ok(all(s.get("parentSpanId") == TP_PARENT for s, _, _ in spans), "  the parent is the traceparent's parent-id")
    ok(len({s["spanId"] for s, _, _ in spans}) == 1000 and
       all(re.fullmatch(r"[0-9a-f]{16}", s["spanId"]) and s["spanId"] != TP_PARENT for s, _, _ in spans),
       "  a span id of their own each")
    ok(all("status" not in s for s, _, _ in spans), "  status unset on a 200")
    ok(all(int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"]) > (time.time() - 600) * 1e9
           for s, _, _ in spans), "  start and end in Unix nanoseconds, end after start")
    a = attrs(spans[0][0])
    ok(a == {"http.request.method": "GET", "url.path": "/version", "http.route": "/version",
             "http.response.status_code": "200", "network.peer.address": "127.0.0.1",
             "user_agent.original": "otel-test/1"}, "  the HTTP attributes: %s" % a)
    r = attrs(spans[0][1])
    ok(r.get("service.name") == "otel-test" and r.get("deployment.environment") == "test"
       and r.get("team") == "a b" and r.get("telemetry.sdk.name") == "microd",
       "  the resource: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (decoded): %s" % r)
    ok(spans[0][2].get("name") == "microd", "  the scope is microd")
    first = rcv.received()[b_recv]
    ok(first["path"] == "/v1/traces" and first["method"] == "POST"
       and first["content_type"] == "application/json",
       "POST {endpoint}/v1/traces as application/json")
    ok(first["headers"].get("x-api-key") == "s=cret", "OTEL_EXPORTER_OTLP_HEADERS are sent")
    logged = {(j.get("trace_id"), j.get("span_id")) for j in access_log(log) if j.get("path") == "/version"}
    ok(logged == {(s["traceId"], s.get("parentSpanId")) for s, _, _ in spans},
       "the access log's trace ids (and parent ids) are the spans'")
    n_before = b_spans + len(spans)

    # A route template, never the raw path; Error on 5xx only; no route.
    for path in ("/test/status/503", "/test/status/404", "/no/such/path", "/test/trace",
                 "/health", "/livez", "/test/statement?ms=5", "/test/statement?sqlstate=40001"):
        get(conn, path, {"traceparent": traceparent(5000 + len(path))})
    status, body, _ = get(conn, "/test/trace", {"traceparent": traceparent(7000)})
    outbound = json.loads(body)["outbound"]
    conn.request("FOOBAR", "/version", headers={"traceparent": traceparent(7001)})
    conn.getresponse().read()
    get(conn, "/version")
    spans = poll(lambda: (lambda s: s if len(s) >= n_before + 9 else None)(rcv.spans()), 10, 0.1) or rcv.spans()
    new = [s for s, _, _ in spans[n_before:]]
    by_name = {}
    for s in new:
        by_name.setdefault(s["name"], []).append(s)
    ok(sorted(by_name) == ["GET", "GET /test/statement", "GET /test/status/{code}", "GET /test/trace",
                           "GET /version", "HTTP", "test_statement"],
       "names: the route's template, METHOD alone with no route; probes not traced: %s" % sorted(by_name))
    st = {attrs(s)["http.response.status_code"]: s for s in by_name.get("GET /test/status/{code}", [])}
    ok(st.get("503", {}).get("status") == {"code": 2} and "status" not in st.get("404", {"status": 1}),
       "status Error (2) on a 503, unset on a 404")
    ok(attrs(st.get("503", {})).get("url.path") == "/test/status/503"
       and attrs(st.get("503", {})).get("http.route") == "/test/status/{code}",
       "url.path is the path, http.route the template")
    odd = [s for sp in by_name.values() for s in sp
           if s["traceId"] == "%032x" % (0x0af7651916cd43dd8448eb2100000000 + 7001)]
    ok(len(odd) == 1 and odd[0]["name"] == "HTTP" and attrs(odd[0]).get("http.request.method") == "_OTHER"
       and attrs(odd[0]).get("http.request.method_original") == "FOOBAR",
       "a method HTTP does not define: named HTTP, _OTHER, the method in method_original (%s)"
       % [(x["name"], attrs(x)) for x in odd])
    nr = by_name.get("GET", [{}])[0]
    ok("http.route" not in attrs(nr) and attrs(nr).get("http.response.status_code") == "404",
       "no route matched: no http.route, status 404")
    tr = [s for s in by_name.get("GET /test/trace", []) if s["traceId"] == "%032x" % (0x0af7651916cd43dd8448eb2100000000 + 7000)]
    ok(len(tr) == 1 and outbound == "00-%s-%s-01" % (tr[0]["traceId"], tr[0]["spanId"]),
       "the traceparent a handler sends on carries this request's span id: %s" % outbound)
    root = by_name.get("GET /version", [{}])[-1]
    ok("parentSpanId" not in root and re.fullmatch(r"[0-9a-f]{32}", root.get("traceId", "")),
       "no traceparent: a root span with a new trace id")
    rootline = [j for j in access_log(log) if j.get("trace_id") == root.get("traceId")]
    ok(len(rootline) == 1 and "span_id" not in rootline[0] and rootline[0].get("trace_flags") == "01",
       "  that trace id is in the access log, with trace_flags and no span_id (no caller): %s" % rootline)
    servers = {s["spanId"]: s for s in by_name.get("GET /test/statement", [])}
    clients = by_name.get("test_statement", [])
    ok(len(clients) == 2 and all(c["kind"] == 3 and c.get("parentSpanId") in servers
                                 and servers[c["parentSpanId"]]["traceId"] == c["traceId"] for c in clients),
       "otel_client_span: CLIENT (3) spans, children of their request's SERVER span")
    ca = sorted((attrs(c) for c in clients), key=lambda a: "db.response.status_code" in a)
    ok(len(ca) == 2 and ca[0] == {"db.system.name": "postgresql", "db.operation.name": "test_statement"}
       and ca[1].get("db.response.status_code") == "40001",
       "  db.system.name postgresql, db.operation.name; db.response.status_code on error: %s" % ca)
    err = [c for c in clients if "db.response.status_code" in attrs(c)]
    ok(err and err[0].get("status") == {"code": 2}
       and 4.5e6 <= min(int(c["endTimeUnixNano"]) - int(c["startTimeUnixNano"]) for c in clients if c not in err) < 1e8,
       "  status Error with a SQLSTATE; the statement's own duration")
    conn.close()
    exported = metric(port, "microd_otel_spans_exported_total")
    ok(exported is not None and exported >= 1000 + 9, "microd_otel_spans_exported_total counts them (%s)" % exported)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    _, scrape, _ = get(c, "/metrics")
    c.close()
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=scrape, capture_output=True)
        ok(r.returncode == 0, "promtool check metrics accepts the scrape%s" % (r.stdout + r.stderr).decode()[:200])
    else:
        skip("promtool is not installed")
    ok(stop_microd(proc, log) == 0, "exits 0")


def test_log_probes(rcv):
    before = len(rcv.spans())
    proc, port, log = microd(rcv, "--log-probes", OTEL_BSP_SCHEDULE_DELAY=50)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    get(c, "/health")
    c.close()
    spans = poll(lambda: (lambda s: s if len(s) > before else None)(rcv.spans()), 10, 0.05) or []
    ok([s["name"] for s, _, _ in spans[before:]] == ["GET /health"], "--log-probes: probes are traced")
    stop_microd(proc, log)


def test_drain(rcv):
    """A long schedule delay: the drain at SIGTERM sends what is queued."""
    before = len(rcv.spans())
    proc, port, log = microd(rcv, OTEL_BSP_SCHEDULE_DELAY=600000)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    get(c, "/version", {"traceparent": traceparent(9001)})
    c.close()
    t0 = time.monotonic()
    status = stop_microd(proc, log)
    took = time.monotonic() - t0
    got = [s for s, _, _ in rcv.spans()[before:]]
    ok(status == 0 and [s["traceId"] for s in got] == ["%032x" % (0x0af7651916cd43dd8448eb2100000000 + 9001)],
       "SIGTERM: the queued span is sent before exit (%.2f s)" % took)


def test_samplers(rcv):
    before = len(rcv.spans())
    proc, port, log = microd(rcv, OTEL_BSP_SCHEDULE_DELAY=50)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    _, body, _ = get(c, "/test/trace", {"traceparent": traceparent(1, "00")})
    get(c, "/version", {"traceparent": traceparent(2, "01")})
    c.close()
    spans = poll(lambda: (lambda s: s if len(s) > before else None)(rcv.spans()), 10, 0.05) or []
    got = [s["traceId"][-4:] for s, _, _ in rcv.spans()[before:]]
    out = json.loads(body)["outbound"]
    ok(got == ["0002"], "parentbased_always_on (the default): an unsampled parent's request is not recorded, "
                        "a sampled one's is: %s" % got)
    ok(re.fullmatch(r"00-%032x-[0-9a-f]{16}-00" % (0x0af7651916cd43dd8448eb2100000001), out)
       and out[36:52] != TP_PARENT, "  the traceparent sent on: flags 00, this request's span id: %s" % out)
    stop_microd(proc, log)

    before = len(rcv.spans())
    proc, port, log = microd(rcv, OTEL_BSP_SCHEDULE_DELAY=50, OTEL_TRACES_SAMPLER="always_off")
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(5):
        get(c, "/version", {"traceparent": traceparent(i, "01")})
    get(c, "/version")
    c.close()
    status = stop_microd(proc, log)
    ok(status == 0 and len(rcv.spans()) == before, "always_off: nothing recorded, a sampled parent's neither")

    before = len(rcv.spans())
    proc, port, log = microd(rcv, OTEL_BSP_SCHEDULE_DELAY=50, OTEL_TRACES_SAMPLER="traceidratio",
                             OTEL_TRACES_SAMPLER_ARG="0.5")
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    low = "00-0af7651916cd43dd1000000000000000-%s-00" % TP_PARENT
    high = "00-0af7651916cd43ddf000000000000000-%s-01" % TP_PARENT
    get(c, "/version", {"traceparent": low})
    get(c, "/version", {"traceparent": high})
    c.close()
    stop_microd(proc, log)
    got = [s["traceId"] for s, _, _ in rcv.spans()[before:]]
    ok(got == ["0af7651916cd43dd1000000000000000"],
       "traceidratio 0.5: the trace id's low half below 2^63 is kept, whatever the parent's flag: %s" % got)


def test_retry_after(rcv):
    before = len(rcv.received())
    rcv.mode(mode="status", status=503, retry_after="1", times=2)
    proc, port, log = microd(rcv, OTEL_BSP_SCHEDULE_DELAY=50)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    worst = 0
    for i in range(20):
        status, _, took = get(c, "/version", {"traceparent": traceparent(100 + i)})
        worst = max(worst, took)
    got = poll(lambda: (lambda r: r if any(e["status"] == 200 for e in r) else None)(rcv.received()[before:]), 10, 0.05) or []
    ok([e["status"] for e in got][:3] == [503, 503, 200],
       "503 with Retry-After: 1 twice: retried, then taken: %s" % [e["status"] for e in got])
    gaps = [(got[i + 1]["at_ms"] - got[i]["at_ms"]) / 1000 for i in range(min(2, len(got) - 1))]
    ok(len(gaps) == 2 and all(0.95 <= g < 1.9 for g in gaps), "  each retry after the Retry-After delay: %s" % gaps)
    ok(len(got) >= 3 and got[0]["body"] == got[1]["body"] == got[2]["body"],
       "  the same batch each time")
    ok(worst < 0.5, "  requests unaffected meanwhile (slowest %.3f s)" % worst)
    ok(metric(port, "microd_otel_export_failures_total") == 0, "  no failure counted")
    stop_microd(proc, log)
    rcv.mode(mode="ok")


def test_retry_after_zero(rcv):
    """Retry-After: 0 waits the backoff (0.5 to 1 s the first time), not a
    storm of POSTs."""
    before = len(rcv.received())
    rcv.mode(mode="status", status=503, retry_after="0", times=3)
    proc, port, log = microd(rcv, OTEL_BSP_SCHEDULE_DELAY=50)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    get(c, "/version", {"traceparent": traceparent(150)})
    c.close()
    got = poll(lambda: (lambda r: r if any(e["status"] == 200 for e in r) else None)(rcv.received()[before:]), 15, 0.05) or []
    gaps = [(got[i + 1]["at_ms"] - got[i]["at_ms"]) / 1000 for i in range(len(got) - 1)]
    ok([e["status"] for e in got] == [503, 503, 503, 200] and len(gaps) == 3 and gaps[0] >= 0.45
       and all(g >= 0.45 for g in gaps),
       "503 with Retry-After: 0 three times: 4 POSTs, each retry after the backoff, not at once: %s %s"
       % ([e["status"] for e in got], gaps))
    stop_microd(proc, log)
    rcv.mode(mode="ok")


def test_400(rcv):
    before = len(rcv.received())
    rcv.mode(mode="status", status=400)
    proc, port, log = microd(rcv, OTEL_BSP_SCHEDULE_DELAY=50)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    get(c, "/version", {"traceparent": traceparent(200)})
    c.close()
    failures = poll(lambda: metric(port, "microd_otel_export_failures_total"), 10, 0.05)
    ok(failures == 1, "400: the batch is a failure (microd_otel_export_failures_total %s)" % failures)
    # Backoff would have tried again within a second: wait past that.
    time.sleep(1.5)  # not a synchronisation: the time a retry would come in
    got = rcv.received()[before:]
    # The /metrics scrapes above are traced too: a batch of their own each.
    bodies = [json.dumps(e["body"], sort_keys=True) for e in got]
    ok(got and all(e["status"] == 400 for e in got) and len(set(bodies)) == len(bodies),
       "  never retried: each batch sent once (%d POSTs, %d batches)" % (len(bodies), len(set(bodies))))
    ok("spans not exported" in log_text(log) and "400" in log_text(log), "  logged with the status line")
    stop_microd(proc, log)
    rcv.mode(mode="ok")


def test_slow(rcv):
    before = len(rcv.received())
    rcv.mode(mode="slow", delay_ms=1500)
    proc, port, log = microd(rcv, OTEL_BSP_SCHEDULE_DELAY=50)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    worst = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2:
        _, _, took = get(c, "/version", {"traceparent": traceparent(300)})
        worst = max(worst, took)
    c.close()
    ok(len(rcv.received()) > before and worst < 0.5,
       "a receiver that answers after 1.5 s: requests unaffected (slowest %.3f s)" % worst)
    stop_microd(proc, log)
    rcv.mode(mode="ok")


def test_never(rcv):
    rcv.mode(mode="never")
    proc, port, log = microd(rcv, OTEL_BSP_SCHEDULE_DELAY=50, OTEL_BSP_MAX_QUEUE_SIZE=10,
                             OTEL_BSP_MAX_EXPORT_BATCH_SIZE=5, OTEL_BSP_EXPORT_TIMEOUT=2000,
                             OTEL_EXPORTER_OTLP_TIMEOUT=10000)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    worst = 0
    statuses = set()
    for i in range(100):
        status, _, took = get(c, "/version", {"traceparent": traceparent(400 + i)})
        statuses.add(status)
        worst = max(worst, took)
    c.close()
    dropped = metric(port, "microd_otel_spans_dropped_total")
    ok(statuses == {200} and worst < 0.5, "a receiver that never answers: requests unaffected (slowest %.3f s)" % worst)
    ok(dropped is not None and 100 - 5 - 10 <= dropped <= 100 - 10,
       "  the queue (10) drops and counts past its size: %s of 100" % dropped)
    ok(metric(port, "microd_otel_spans_exported_total") == 0, "  none counted exported")
    t0 = time.monotonic()
    status = stop_microd(proc, log, timeout=10)
    took = time.monotonic() - t0
    ok(status == 0 and took < 2.0 + 1.5, "SIGTERM: exits 0 within the export timeout (2 s): %.2f s" % took)
    rcv.mode(mode="ok")


def test_config(rcv):
    env = env_for(rcv, OTEL_SERVICE_NAME="svc", OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0.25")
    r = subprocess.run([BIN, "--check-config"], env=env, capture_output=True, text=True)
    ok(r.returncode == 0 and ("traces to %s/v1/traces as OTLP/HTTP JSON: service svc, sampler traceidratio 0.25\n"
                              % rcv.endpoint) in r.stdout
       and "traces: batches of 512 every 5000 ms, queue 2048, export timeout 30000 ms, request timeout 10000 ms"
       in r.stdout, "--check-config shows where traces go and the defaults")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    r = subprocess.run([BIN, "--check-config"], env=env, capture_output=True, text=True)
    ok(r.returncode == 0 and "traces: off\n" in r.stdout, "--check-config: traces off without an endpoint")
    r = subprocess.run([BIN, "--check-config"], env=env_for(rcv, OTEL_SDK_DISABLED="true"), capture_output=True, text=True)
    ok("traces: off\n" in r.stdout, "OTEL_SDK_DISABLED=true: off")
    r = subprocess.run([BIN, "--check-config"], env=env_for(rcv, OTEL_BSP_MAX_QUEUE_SIZE="lots"),
                       capture_output=True, text=True)
    ok(r.returncode == 0 and "microd: warning: OTEL_BSP_MAX_QUEUE_SIZE=lots is not valid: 2048 used\n" in r.stderr,
       "a value that is not valid: a warning, the default used")
    r = subprocess.run([BIN, "--port", "0"], env=env_for(rcv, OTEL_EXPORTER_OTLP_PROTOCOL="grpc"),
                       capture_output=True, text=True, timeout=10)
    ok(r.returncode == 2 and "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: microd exports OTLP over HTTP as JSON only" in r.stderr,
       "grpc: refuses to start, exit 2, with why: %s" % r.stderr.strip()[:120])

    before = len(rcv.received())
    proc, port, log = microd(rcv, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", OTEL_BSP_SCHEDULE_DELAY=50)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    get(c, "/version")
    c.close()
    got = poll(lambda: rcv.received()[before:], 10, 0.05) or []
    text = log_text(log)
    ok(text.count("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf: microd sends OTLP as JSON") == 1,
       "http/protobuf: one warning")
    ok(len(got) >= 1 and got[0]["path"] == "/v1/traces" and got[0]["content_type"] == "application/json"
       and got[0]["error"] is None, "  and JSON to the same path")
    stop_microd(proc, log)

    before = len(rcv.received())
    proc, port, log = microd(rcv, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=rcv.endpoint + "/custom/path",
                             OTEL_BSP_SCHEDULE_DELAY=50)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    get(c, "/version")
    c.close()
    got = poll(lambda: rcv.received()[before:], 10, 0.05) or []
    ok(len(got) >= 1 and got[0]["path"] == "/custom/path", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as it is")
    stop_microd(proc, log)


def test_database(rcv):
    """GET /notes/{id} and /queries?queries=3: a SERVER span with a CLIENT
    child for each statement."""
    from pg import Cluster
    with Cluster() as pg:
        before = len(rcv.spans())
        proc, port, log = microd(rcv, "--example-routes", "--database", pg.uri, "--migrate",
                                 binary=BIN, OTEL_BSP_SCHEDULE_DELAY=50)
        poll(lambda: metric(port, "microd_ready") == 1, 10, 0.05)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("POST", "/notes", body=json.dumps({"title": "t", "body": "b"}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        note = json.loads(r.read())
        status, _, _ = get(c, "/notes/%s" % note.get("id"), {"traceparent": traceparent(8000)})
        qstatus, _, _ = get(c, "/queries?queries=3", {"traceparent": traceparent(8001)})
        c.close()
        tid = "%032x" % (0x0af7651916cd43dd8448eb2100000000 + 8000)
        spans = poll(lambda: (lambda s: s if any(x["kind"] == 3 and x["traceId"] == tid for x in s) else None)(
            [s for s, _, _ in rcv.spans()[before:]]), 10, 0.05) or []
        server = [s for s in spans if s["traceId"] == tid and s["kind"] == 2]
        client = [s for s in spans if s["traceId"] == tid and s["kind"] == 3]
        ok(status == 200 and len(server) == 1 and server[0]["name"] == "GET /notes/{id}",
           "GET /notes/{id}: its SERVER span")
        ok(client and all(c.get("parentSpanId") == server[0]["spanId"] for c in client),
           "  with CLIENT children")
        ok(len(client) == 1 and attrs(client[0]).get("db.system.name") == "postgresql"
           and attrs(client[0]).get("db.operation.name") == "notes_get" and client[0]["name"] == "notes_get",
           "  one: notes_get, db.system.name postgresql, db.operation.name notes_get (%s)"
           % [(c["name"], attrs(c)) for c in client])
        tid = "%032x" % (0x0af7651916cd43dd8448eb2100000000 + 8001)
        spans = poll(lambda: (lambda s: s if len([x for x in s if x["kind"] == 3 and x["traceId"] == tid]) >= 3
                              else None)([s for s, _, _ in rcv.spans()[before:]]), 10, 0.05) or []
        server = [s for s in spans if s["traceId"] == tid and s["kind"] == 2]
        client = [s for s in spans if s["traceId"] == tid and s["kind"] == 3]
        ok(qstatus == 200 and len(server) == 1 and server[0]["name"] == "GET /queries" and len(client) == 3
           and all(c["name"] == "world_get" and c.get("parentSpanId") == server[0]["spanId"] for c in client),
           "GET /queries?queries=3: its SERVER span with 3 CLIENT children world_get (%d)" % len(client))
        stop_microd(proc, log)


def main():
    if not os.path.isdir(MODULES) or shutil.which("node") is None:
        ok(False, "the OTLP receiver's packages: run make otlp-deps (%s)" % MODULES)
        return done()
    rcv = Receiver()
    try:
        test_config(rcv)
        test_thousand(rcv)
        test_log_probes(rcv)
        test_drain(rcv)
        test_samplers(rcv)
        test_retry_after(rcv)
        test_retry_after_zero(rcv)
        test_400(rcv)
        test_slow(rcv)
        test_never(rcv)
        test_database(rcv)
    finally:
        rcv.stop()
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
