#!/usr/bin/env python3
"""Chaos suite: a mixed load against real `caravan` nodes while a fault loop breaks them, then a verdict.

Load (for --duration): bench-w1 runs at a bounded rate over a few keep-alive connections; `chaos-mix-N` runs
(http step to the driver's counting endpoint, http step to its slow endpoint, a sleep of N = 1..3 s, an approval the
driver grants with POST /v1/runs/{id}/signals/approve, a last http step); agent runs against a fake
OpenAI-compatible provider served by the driver. A consumer follows GET /v1/events (SSE, Last-Event-ID, any live
node) throughout, and an outbound webhook subscribed to every event posts to the driver's /hook, which checks each
delivery's Standard Webhooks signature (its own HMAC, written from the specification).

Faults (--scenario):
  sqlite   one node on SQLite, SIGKILLed and restarted every 2-8 s
  pg2/pg3  two/three nodes on one PostgreSQL database (stable --node-id, own port); a random one SIGKILLed and
           restarted every 2-8 s
  pg-stop  two nodes; PostgreSQL stopped with `pg_ctl stop -m immediate` for 5 s and started again, every 5-10 s
  sigstop  two nodes with --lease-duration 3s; a random one SIGSTOPped for 4-8 s (past its lease), then SIGCONTed

Verdict, after the load stops and every run has ended (bounded): runs acknowledged vs succeeded (0 lost, 0 stuck,
0 failed); steps whose completion was committed and whose endpoint was called again afterwards (0 allowed);
interrupted steps repeated with the same key (counted); per-run histories (seq 1..n, one terminal event, each
step succeeded at most once); events on the stream vs in the database (each exactly once); webhook deliveries vs the
database (each event at least once, a repeat under the same webhook-id, each run's events first accepted in order,
every signature valid); node recovery times.
Prints one summary line; exits 1 on any violation, 2 when the scenario could not be run. Python 3 standard
library only; all traffic on 127.0.0.1; every loop and wait bounded. Normally started by scripts/chaos.
"""
import argparse
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import queue
import random
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime

TERMINAL = {"succeeded", "failed", "cancelled"}


def now_ms():
    return time.time() * 1000.0


def parse_at(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000.0


def parse_duration(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def request(port, method, path, body=None, headers=None, timeout=10, connection=None):
    own = connection is None
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body.encode() if isinstance(body, str) else body
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


# ---------------------------------------------------------------------------------------------------------------
# The driver's endpoints: counting http targets and a fake OpenAI-compatible model


class Calls:
    """Endpoint calls: (kind, key) -> [wall-clock ms]; kind is the path for http steps, 'model' for the model."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = defaultdict(list)
        self.bad = []  # (path, key) whose key does not match the path's step

    def add(self, kind, key):
        with self.lock:
            self.calls[(kind, key)].append(now_ms())

    def snapshot(self):
        with self.lock:
            return {k: list(v) for k, v in self.calls.items()}


class Hooks:
    """Webhook deliveries the driver received: event id -> [webhook-id], first-accepted order per run, bad ones."""

    def __init__(self):
        self.lock = threading.Lock()
        self.secret = None
        self.by_event = defaultdict(list)
        self.first_seqs = defaultdict(list)  # run id -> seqs in the order first received
        self.bad_signatures = []
        self.count = 0

    def verify(self, headers, body):
        msg_id, stamp, signature = (headers.get(h) or "" for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
        if not self.secret or not self.secret.startswith("whsec_"):
            return False
        key = base64.b64decode(self.secret[len("whsec_"):])
        expected = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()).decode()
        return any(hmac.compare_digest(part, "v1," + expected) for part in signature.split(" "))

    def add(self, headers, body):
        ok = self.verify(headers, body)
        try:
            data = json.loads(body)["data"]
            event_id, run, seq = int(data["event"]["id"]), data["run_id"], data["event"]["seq"]
        except (ValueError, KeyError, TypeError):
            ok, event_id, run, seq = False, None, None, None
        with self.lock:
            self.count += 1
            if not ok:
                self.bad_signatures.append(headers.get("webhook-id"))
                return
            if not self.by_event[event_id]:
                self.first_seqs[run].append(seq)
            self.by_event[event_id].append(headers.get("webhook-id"))


MODEL_ANSWER = json.dumps({
    "id": "chatcmpl-chaos", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "done"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9},
}).encode()


def start_endpoint(calls, slow_seconds, hooks):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?")[0]
            if path == "/hook":
                hooks.add(self.headers, body)
                payload = b""
                self.send_response(204)
                self.end_headers()
                return
            if path == "/v1/chat/completions":
                m = re.search(rb"tag ([0-9a-f]{32})", body)
                calls.add("model", m.group(1).decode() if m else "?")
                time.sleep(0.3)
                payload = MODEL_ANSWER
            else:
                calls.add(path, self.headers.get("Idempotency-Key") or "")
                if path == "/slow":
                    time.sleep(slow_seconds)
                payload = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

        def handle(self):
            try:
                super().handle()
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---------------------------------------------------------------------------------------------------------------
# Nodes


class Node:
    def __init__(self, args, index):
        self.args = args
        self.index = index
        self.node_id = f"chaos-node-{index}"
        self.port = free_port()
        self.data = os.path.join(args.data, f"node{index}")
        os.makedirs(self.data, exist_ok=True)
        self.log_path = os.path.join(args.data, f"node{index}.log")
        self.process = None
        self.up = False  # accepting load (started and not known dead or stopped)
        self.lives = 0

    def start(self):
        a = self.args
        command = [a.binary, "serve", "--port", str(self.port), "--data", self.data, "--node-id", self.node_id,
                   "--master-key", a.master_key, "--egress-allow", "127.0.0.1"]
        if a.database:
            command += ["--database", a.database]
        if a.lease_duration:
            command += ["--lease-duration", a.lease_duration]
        env = dict(os.environ, CARAVAN_EGRESS_ALLOW="127.0.0.1", CARAVAN_LOG_FORMAT="json")
        log = open(self.log_path, "ab")
        log.write(f"\n=== chaos: life {self.lives + 1} of {self.node_id} at {time.strftime('%H:%M:%S')} ===\n".encode())
        log.flush()
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.lives += 1

    def ready(self):
        try:
            status, _ = request(self.port, "GET", "/readyz", timeout=2)
            return status == 200
        except (OSError, http.client.HTTPException):
            return False

    def wait_ready(self, timeout, since=None):
        """Seconds from `since` (default: the process start) to /readyz 200, or None."""
        since = self.started_at if since is None else since
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return None
            if self.ready():
                self.up = True
                return time.monotonic() - since
            time.sleep(0.02)
        return None

    def kill(self):
        self.up = False
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self):
        self.up = False
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


class Postgres:
    """The PostgreSQL server of scripts/lib/postgres.sh, for the pg-stop scenario."""

    def __init__(self, args):
        self.bin, self.dir, self.user = args.pg_bin, args.pg_dir, args.pg_user
        self.port = re.search(r":(\d+)/", args.database).group(1)

    def _run(self, *argv):
        command = [os.path.join(self.bin, "pg_ctl"), "-D", os.path.join(self.dir, "data")] + list(argv)
        if self.user:
            command = ["runuser", "-u", self.user, "--"] + command
        return subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90).returncode

    def stop(self):
        return self._run("-m", "immediate", "stop")

    def start(self):
        # The options PostgreSQL was started with (postmaster.opts), so a restart keeps its port, socket directory
        # and durability settings.
        with open(os.path.join(self.dir, "data", "postmaster.opts")) as f:
            argv = shlex.split(f.read())[1:]
        options = []
        while argv:
            arg = argv.pop(0)
            if arg == "-D":
                argv.pop(0)
            else:
                options.append(shlex.quote(arg))
        return self._run("-l", os.path.join(self.dir, "server.log"), "-w", "-t", "60", "-o", " ".join(options), "start")


# ---------------------------------------------------------------------------------------------------------------
# The suite


class Suite:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.calls = Calls()
        self.hooks = Hooks()
        self.endpoint = start_endpoint(self.calls, args.slow, self.hooks)
        self.target = self.endpoint.server_address[1]
        count = {"sqlite": 1, "pg2": 2, "pg3": 3, "pg-stop": 2, "sigstop": 2}[args.scenario]
        self.nodes = [Node(args, i + 1) for i in range(count)]
        self.postgres = Postgres(args) if args.scenario == "pg-stop" else None
        self.stop_load = threading.Event()
        self.stop_faults = threading.Event()
        self.stop_stream = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}  # run id -> kind (w1, mix, agent)
        self.tags = {}  # agent tag -> run id
        self.attempted = Counter()
        self.refused = Counter()  # answered, but not 200/201
        self.errors = Counter()  # no answer
        self.dropped = 0  # starts the bounded queue had no room for
        self.recovery = []  # seconds from process start (or PostgreSQL start, or SIGCONT) to /readyz 200
        self.not_recovered = []
        self.faults = Counter()
        self.stream_ids = Counter()
        self.stream_keys = Counter()  # (run_id, seq) on the stream
        self.stream_last = 0
        self.stream_connects = 0
        self.approve_queue = queue.Queue(maxsize=100000)
        self.approved = {}  # run id -> monotonic time of the last approve answered 202
        # (run, step) -> wall-clock ms when the driver first saw its step.succeeded (step 'llm': first llm.response)
        # on the stream: later than its commit, so a call after it came after the commit. (The events' own `at` is
        # the engine's clock of the pass that produced them, which may precede the step's last call.)
        self.seen_at = {}
        self.notes = []

    # -- helpers --------------------------------------------------------------------------------------------------

    def live_nodes(self):
        return [n for n in self.nodes if n.up] or self.nodes

    def any_port(self):
        return self.rng.choice(self.live_nodes()).port

    def api(self, method, path, body=None, headers=None, timeout=10, attempts=30):
        """A request to any live node, retried (bounded) on no answer or 5xx."""
        last = None
        for _ in range(attempts):
            port = self.any_port()
            try:
                status, payload = request(port, method, path, body, dict(self.auth, **(headers or {})), timeout=timeout)
                if status < 500 and status != 429:
                    return status, payload
                last = f"{status} {payload[:200]!r}"
            except (OSError, http.client.HTTPException) as error:
                last = repr(error)
            time.sleep(0.5)
        raise RuntimeError(f"{method} {path}: no good answer after {attempts} attempts: {last}")

    # -- setup ----------------------------------------------------------------------------------------------------

    def setup(self):
        a = self.args
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            if node.wait_ready(120) is None:
                raise RuntimeError(f"{node.node_id} did not become ready; see {node.log_path}")
        port = self.nodes[0].port
        status, body = request(port, "POST", "/v1/auth/signup", json.dumps({
            "email": "chaos@example.com", "password": "a long and unusual chaos passphrase", "organization": "Chaos"}),
            {"Content-Type": "application/json"})
        if status not in (200, 201):
            raise RuntimeError(f"signup answered {status}: {body[:300]!r}")
        token = {"Authorization": "Bearer " + json.loads(body)["access_token"]}
        js = {"Content-Type": "application/json"}
        status, body = request(port, "POST", "/v1/api-keys", json.dumps({"name": "chaos", "role": "developer"}), dict(token, **js))
        if status not in (200, 201):
            raise RuntimeError(f"creating an API key answered {status}: {body[:300]!r}")
        self.auth = {"Authorization": "Bearer " + json.loads(body)["key"]}
        puts = [
            ("/v1/secrets/k", json.dumps({"value": "sk-chaos"}), token, js),
            ("/v1/providers/local", json.dumps({"kind": "openai", "base_url": f"http://127.0.0.1:{self.target}/v1",
                                                "api_key_secret": "k", "models": ["m"], "timeout": "20s"}), token, js),
        ]
        w1 = ('name: bench-w1\nsteps:\n  - {id: a, template: "a"}\n  - {id: b, needs: [a], template: "{{ steps.a.output }}b"}\n'
              '  - {id: c, needs: [b], template: "{{ steps.b.output }}c"}\noutput: "{{ steps.c.output }}"\n')
        puts.append(("/v1/workflows/bench-w1", w1, self.auth, {"Content-Type": "application/yaml"}))
        t = self.target
        for n in (1, 2, 3):
            mix = (f"name: chaos-mix-{n}\nsteps:\n"
                   f'  - {{id: a, http: {{method: POST, url: "http://127.0.0.1:{t}/a"}}}}\n'
                   f'  - {{id: b, needs: [a], http: {{method: POST, url: "http://127.0.0.1:{t}/slow"}}, timeout: 20s}}\n'
                   f"  - {{id: s, needs: [b], sleep: {n}s}}\n"
                   f"  - {{id: p, needs: [s], approval: {{message: chaos}}}}\n"
                   f'  - {{id: c, needs: [p], http: {{method: POST, url: "http://127.0.0.1:{t}/c"}}}}\n'
                   f'output: "mix"\n')
            puts.append((f"/v1/workflows/chaos-mix-{n}", mix, self.auth, {"Content-Type": "application/yaml"}))
        agent = "model: local/m\ninstructions: \"You answer tag {{ input.tag }} with one word.\"\nmax_turns: 2\n"
        puts.append(("/v1/agents/a", agent, self.auth, {"Content-Type": "application/yaml"}))
        puts.append(("/v1/webhooks/chaos", json.dumps({"url": f"http://127.0.0.1:{t}/hook", "events": ["*"]}),
                     self.auth, js))
        for path, body, auth, headers in puts:
            status, payload = request(port, "PUT", path, body, dict(auth, **headers))
            if status not in (200, 201):
                raise RuntimeError(f"PUT {path} answered {status}: {payload[:300]!r}")
            if path == "/v1/webhooks/chaos":
                self.hooks.secret = json.loads(payload)["secret"]

    # -- load -----------------------------------------------------------------------------------------------------

    def scheduler(self, work):
        """Puts start orders on `work` at the configured rates until the load stops (bounded by --duration)."""
        a = self.args
        rates = [("w1", a.w1_rate), ("mix", a.mix_rate), ("agent", a.agent_rate)]
        owed = Counter()
        tick = 0.05
        deadline = time.monotonic() + a.duration + 5
        while not self.stop_load.is_set() and time.monotonic() < deadline:
            for kind, rate in rates:
                owed[kind] += rate * tick
                while owed[kind] >= 1:
                    owed[kind] -= 1
                    try:
                        work.put_nowait(kind)
                    except queue.Full:
                        self.dropped += 1
            time.sleep(tick)

    def worker(self, work):
        connections = {}
        js = dict(self.auth, **{"Content-Type": "application/json"})
        while not (self.stop_load.is_set() and work.empty()):
            try:
                kind = work.get(timeout=0.2)
            except queue.Empty:
                continue
            if self.stop_load.is_set():
                continue
            tag = None
            if kind == "w1":
                path, body = "/v1/workflows/bench-w1/runs", '{"input": {}}'
            elif kind == "mix":
                path, body = f"/v1/workflows/chaos-mix-{self.rng.randint(1, 3)}/runs", '{"input": {}}'
            else:
                tag = uuid.uuid4().hex
                path, body = "/v1/agents/a/runs", json.dumps({"input": {"tag": tag}})
            node = self.rng.choice(self.live_nodes())
            conn = connections.get(node.port) or http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
            connections[node.port] = conn
            self.attempted[kind] += 1
            try:
                status, payload = request(node.port, "POST", path, body, js, connection=conn)
            except (OSError, http.client.HTTPException):
                conn.close()
                connections.pop(node.port, None)
                self.errors[kind] += 1
                continue
            if status in (200, 201):
                run = json.loads(payload)["id"]
                with self.lock:
                    self.acked[run] = kind
                    if tag:
                        self.tags[tag] = run
            else:
                self.refused[f"{kind}:{status}"] += 1
        for conn in connections.values():
            conn.close()

    # -- approvals ------------------------------------------------------------------------------------------------

    def approver(self):
        """Approves runs whose step p waits: told by the stream, and by a sweep every 3 s (bounded by stop)."""
        next_sweep = time.monotonic() + 3
        deadline = time.monotonic() + self.args.duration + self.args.drain_timeout + 120
        while not self.stop_faults.is_set() and time.monotonic() < deadline:
            try:
                run = self.approve_queue.get(timeout=0.2)
                self.approve(run)
            except queue.Empty:
                pass
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + 3
                try:
                    self.sweep()
                except RuntimeError as error:
                    self.notes.append(f"approval sweep: {error}")

    def approve(self, run):
        for _ in range(5):
            try:
                status, payload = request(self.any_port(), "POST", f"/v1/runs/{run}/signals/approve", '{"approved": true}',
                                          dict(self.auth, **{"Content-Type": "application/json"}), timeout=10)
            except (OSError, http.client.HTTPException):
                time.sleep(0.3)
                continue
            if status == 202:
                self.approved[run] = time.monotonic()
                return
            if status < 500:
                return
            time.sleep(0.3)

    def sweep(self):
        cursor = None
        for _ in range(100):
            path = "/v1/runs?status=waiting&limit=500" + (f"&cursor={cursor}" if cursor else "")
            status, body = self.api("GET", path, attempts=3)
            if status != 200:
                return
            page = json.loads(body)
            for item in page.get("items", []):
                waiting = any(s["id"] == "p" and s["status"] == "waiting" for s in item.get("steps", []))
                if waiting and time.monotonic() - self.approved.get(item["id"], -1e9) > 10:
                    self.approve(item["id"])
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # -- the event stream -----------------------------------------------------------------------------------------

    def consumer(self):
        deadline = time.monotonic() + self.args.duration + self.args.drain_timeout + 300
        while not self.stop_stream.is_set() and time.monotonic() < deadline:
            node = self.rng.choice(self.live_nodes())
            conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=20)
            try:
                conn.request("GET", "/v1/events", headers=dict(self.auth, **{
                    "Accept": "text/event-stream", "Last-Event-ID": str(self.stream_last)}))
                response = conn.getresponse()
                if response.status != 200:
                    response.read()
                    raise OSError(f"status {response.status}")
                self.stream_connects += 1
                event_id, event_type, data = None, None, []
                while not self.stop_stream.is_set():
                    raw = response.fp.readline()
                    if not raw:
                        break
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if line == "":
                        if data and event_id is not None:
                            self.on_event(int(event_id), event_type, json.loads("\n".join(data)))
                        event_id, event_type, data = None, None, []
                    elif line.startswith(":"):
                        continue
                    else:
                        field, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if field == "id":
                            event_id = value
                        elif field == "event":
                            event_type = value
                        elif field == "data":
                            data.append(value)
            except (OSError, http.client.HTTPException, ValueError):
                time.sleep(0.2)
            finally:
                conn.close()

    def on_event(self, event_id, event_type, event):
        self.stream_ids[event_id] += 1
        self.stream_keys[(event.get("run_id"), event.get("seq"))] += 1
        self.stream_last = max(self.stream_last, event_id)
        if event_type in ("step.succeeded", "llm.response"):
            key = (event.get("run_id"), event.get("step") if event_type == "step.succeeded" else "llm")
            self.seen_at.setdefault(key, now_ms())
        if event_type == "step.waiting" and event.get("step") == "p":
            try:
                self.approve_queue.put_nowait(event["run_id"])
            except queue.Full:
                pass

    # -- faults ---------------------------------------------------------------------------------------------------

    def fault_loop(self):
        a = self.args
        deadline = time.monotonic() + a.duration + 30
        self.stop_faults.wait(self.rng.uniform(2, 4))
        while not self.stop_faults.is_set() and time.monotonic() < deadline:
            if a.scenario in ("sqlite", "pg2", "pg3"):
                node = self.rng.choice(self.nodes)
                node.kill()
                self.faults["sigkill"] += 1
                node.start()
                took = node.wait_ready(120)
                (self.recovery.append(took) if took is not None else self.not_recovered.append(node.node_id))
                self.stop_faults.wait(self.rng.uniform(2, 8))
            elif a.scenario == "pg-stop":
                self.postgres.stop()
                self.faults["pg-stop"] += 1
                for node in self.nodes:
                    node.up = False
                self.stop_faults.wait(5)
                self.postgres.start()
                since = time.monotonic()
                for node in self.nodes:
                    took = node.wait_ready(120, since=since)
                    (self.recovery.append(took) if took is not None else self.not_recovered.append(node.node_id))
                self.stop_faults.wait(self.rng.uniform(5, 10))
            elif a.scenario == "sigstop":
                node = self.rng.choice(self.nodes)
                node.up = False
                node.process.send_signal(signal.SIGSTOP)
                self.faults["sigstop"] += 1
                time.sleep(self.rng.uniform(4, 8))  # past the 3 s lease, whatever the stop flag says
                node.process.send_signal(signal.SIGCONT)
                took = node.wait_ready(60, since=time.monotonic())
                (self.recovery.append(took) if took is not None else self.not_recovered.append(node.node_id))
                self.stop_faults.wait(self.rng.uniform(2, 8))

    # -- the end --------------------------------------------------------------------------------------------------

    def list_runs(self):
        runs, cursor = {}, None
        for _ in range(2000):
            path = "/v1/runs?limit=500" + (f"&cursor={cursor}" if cursor else "")
            status, body = self.api("GET", path)
            if status != 200:
                raise RuntimeError(f"listing runs answered {status}: {body[:300]!r}")
            page = json.loads(body)
            for item in page.get("items", []):
                runs[item["id"]] = item
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return runs

    def pages(self, path, key):
        items, cursor = [], "0"
        for _ in range(100000):
            sep = "&" if "?" in path else "?"
            status, body = self.api("GET", f"{path}{sep}after={cursor}&limit=500")
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
            page = json.loads(body)
            items += page.get("items", [])
            cursor = page.get("next_cursor")
            if not cursor:
                return items
        raise RuntimeError(f"GET {path}: too many pages")

    def run(self):
        a = self.args
        self.setup()
        threads = [threading.Thread(target=self.consumer, daemon=True),
                   threading.Thread(target=self.approver, daemon=True)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        work = queue.Queue(maxsize=max(20, int(4 * (a.w1_rate + a.mix_rate + a.agent_rate))))
        load = [threading.Thread(target=self.scheduler, args=(work,), daemon=True)]
        load += [threading.Thread(target=self.worker, args=(work,), daemon=True) for _ in range(a.connections)]
        faults = threading.Thread(target=self.fault_loop, daemon=True)
        self.load_started = time.monotonic()
        for t in load:
            t.start()
        faults.start()
        self.stop_load.wait(a.duration)
        self.stop_load.set()
        for t in load:
            t.join(timeout=30)
        self.stop_faults.set()
        faults.join(timeout=180)
        # Every node up again (a stopped one continued, a dead one restarted, PostgreSQL running).
        if self.postgres and not all(n.ready() for n in self.nodes):
            self.postgres.start()
        for node in self.nodes:
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)
            else:
                node.start()
            if node.wait_ready(120, since=time.monotonic()) is None:
                self.not_recovered.append(node.node_id)
        # The approver keeps going while the runs drain.
        self.stop_faults.clear()
        threading.Thread(target=self.approver, daemon=True).start()
        drain_start = time.monotonic()
        runs = {}
        while time.monotonic() - drain_start < a.drain_timeout:
            runs = self.list_runs()
            if all(r["status"] in TERMINAL for r in runs.values()) and all(run in runs for run in self.acked):
                break
            time.sleep(1)
        self.drain_seconds = time.monotonic() - drain_start
        self.stop_faults.set()
        db_events = self.pages("/v1/events", "id")
        max_id = max((e["id"] for e in db_events), default=0)
        catch = time.monotonic()
        while self.stream_last < max_id and time.monotonic() - catch < 60:
            time.sleep(0.2)
        time.sleep(1)
        self.stop_stream.set()
        catch = time.monotonic()
        while not {e["id"] for e in db_events} <= set(self.hooks.by_event) and time.monotonic() - catch < 60:
            time.sleep(0.2)
        histories = {}
        for run in runs:
            histories[run] = self.pages(f"/v1/runs/{run}/events", "seq")
        return self.verdict(runs, histories, db_events)

    def verdict(self, runs, histories, db_events):
        a = self.args
        v = {}
        acked = dict(self.acked)
        v["acknowledged"] = len(acked)
        v["succeeded"] = sum(1 for r in acked if runs.get(r, {}).get("status") == "succeeded")
        lost = sorted(r for r in acked if r not in runs)
        stuck = sorted(r for r, item in runs.items() if item["status"] not in TERMINAL)
        failed = sorted(r for r, item in runs.items() if item["status"] in ("failed", "cancelled"))
        wrong_output = sorted(r for r in acked if acked[r] == "w1" and runs.get(r, {}).get("status") == "succeeded"
                              and runs[r].get("output") != "abc")
        unacked = len(set(runs) - set(acked))  # created, but the answer never came (the node died): must end too
        # Histories: seq 1..n, one terminal run event, last; each step succeeded at most once.
        history_errors = []
        succeeded_at = {}  # (run, step) -> ms of its committed step.succeeded
        response_at = {}  # run -> ms of its first committed llm.response (agent runs)
        for run, events in histories.items():
            seqs = [e["seq"] for e in events]
            if seqs != list(range(1, len(seqs) + 1)):
                history_errors.append(f"{run}: seqs {seqs[:10]}...")
            terminal = [e for e in events if e["type"] in ("run.succeeded", "run.failed", "run.cancelled")]
            if runs[run]["status"] in TERMINAL and (len(terminal) != 1 or events[-1] is not terminal[0]):
                history_errors.append(f"{run}: {len(terminal)} terminal events")
            per_step = Counter(e["step"] for e in events if e["type"] == "step.succeeded")
            for step, n in per_step.items():
                if n > 1:
                    history_errors.append(f"{run}: step {step} succeeded {n} times")
            for e in events:
                if e["type"] == "step.succeeded":
                    succeeded_at.setdefault((run, e["step"]), self.seen_at.get((run, e["step"]), parse_at(e["at"]) + 1000))
                if e["type"] == "llm.response":
                    response_at.setdefault(run, self.seen_at.get((run, "llm"), parse_at(e["at"]) + 1000))
        # Endpoint calls: completed steps called again (after their committed success) vs interrupted ones repeated.
        calls = self.calls.snapshot()
        completed_repeats, interrupted_repeats, bad_keys, orphans = [], 0, [], 0
        step_of = {"/a": "a", "/slow": "b", "/c": "c"}
        by_tag = {tag: run for tag, run in self.tags.items()}
        for (kind, key), times in calls.items():
            if kind == "model":
                run, step = by_tag.get(key), "agent"
                done = response_at.get(run)
            else:
                run, _, step = key.rpartition(":")
                if step_of.get(kind) != step:
                    bad_keys.append((kind, key))
                    continue
                done = succeeded_at.get((run, step))
            if run is None or run not in runs:
                orphans += 1
                continue
            times = sorted(times)
            late = [t for t in times if done is not None and t > done]
            if late:
                completed_repeats.append((run, step, kind, done, times))
            interrupted_repeats += max(0, len([t for t in times if done is None or t <= done]) - 1)
        # Every succeeded mix run called a, b and c; every agent run asked the model.
        missing_calls = []
        for run, kind in acked.items():
            if runs.get(run, {}).get("status") != "succeeded":
                continue
            if kind == "mix":
                for path in ("/a", "/slow", "/c"):
                    if (path, f"{run}:{step_of[path]}") not in calls:
                        missing_calls.append(f"{run}{path}")
        # The stream vs the database.
        db_ids = {e["id"] for e in db_events}
        db_keys = Counter((e["run_id"], e["seq"]) for e in db_events)
        hist_keys = {(run, e["seq"]) for run, events in histories.items() for e in events}
        missing = sorted(db_ids - set(self.stream_ids))
        duplicated = sorted(i for i, n in self.stream_ids.items() if n > 1)
        dup_content = sorted(k for k, n in self.stream_keys.items() if n > 1)
        phantom = sorted(set(self.stream_ids) - db_ids)
        db_vs_runs = len(set(db_keys) ^ hist_keys) + sum(1 for n in db_keys.values() if n > 1)
        # Webhook deliveries vs the database: every event at least once, repeats under the same webhook-id, each
        # run's events first accepted in order.
        with self.hooks.lock:
            hooked = {event: list(ids) for event, ids in self.hooks.by_event.items()}
            first_seqs = {run: list(seqs) for run, seqs in self.hooks.first_seqs.items()}
            bad_signatures = list(self.hooks.bad_signatures)
            hook_count = self.hooks.count
        hook_missing = sorted(db_ids - set(hooked))
        hook_phantom = sorted(set(hooked) - db_ids)
        hook_split = sorted(event for event, ids in hooked.items() if len(set(ids)) > 1)
        hook_repeats = sum(len(ids) - 1 for ids in hooked.values())
        hook_disorder = sorted(run for run, seqs in first_seqs.items() if seqs != sorted(seqs))
        rec = sorted(self.recovery)
        p50 = statistics.median(rec) if rec else 0.0
        violations = {
            "lost": lost, "stuck": stuck, "failed": failed, "wrong_output": wrong_output,
            "completed_steps_repeated": completed_repeats, "history_errors": history_errors,
            "bad_keys": bad_keys, "missing_calls": missing_calls, "events_missing": missing,
            "events_duplicated": duplicated + dup_content, "events_phantom": phantom,
            "db_vs_run_histories": [db_vs_runs] if db_vs_runs else [], "not_recovered": self.not_recovered,
            "webhook_missing": hook_missing, "webhook_phantom": hook_phantom, "webhook_id_changed": hook_split,
            "webhook_out_of_order": hook_disorder, "webhook_bad_signature": bad_signatures,
        }
        bad = sum(len(x) for x in violations.values())
        summary = {
            "scenario": a.scenario, "duration_s": a.duration, "binary": a.binary, "nodes": len(self.nodes),
            "faults": dict(self.faults), "attempted": sum(self.attempted.values()), "acknowledged": len(acked),
            "by_kind": dict(Counter(acked.values())), "succeeded": v["succeeded"], "lost": len(lost), "stuck": len(stuck),
            "failed": len(failed), "unacknowledged_runs": unacked, "refused": dict(self.refused), "no_answer": dict(self.errors),
            "dropped": self.dropped, "completed_steps_repeated": len(completed_repeats),
            "interrupted_steps_repeated": interrupted_repeats, "orphan_calls": orphans,
            "events_db": len(db_ids), "events_stream": sum(self.stream_ids.values()), "events_missing": len(missing),
            "events_duplicated": len(duplicated) + len(dup_content), "events_phantom": len(phantom),
            "stream_connects": self.stream_connects, "history_errors": len(history_errors),
            "restarts": len(rec), "recovery_p50_s": round(p50, 2), "recovery_max_s": round(rec[-1], 2) if rec else 0.0,
            "drain_s": round(self.drain_seconds, 1), "violations": bad, "data": a.data,
            "webhook_received": hook_count, "webhook_missing": len(hook_missing), "webhook_repeats": hook_repeats,
            "webhook_out_of_order": len(hook_disorder), "webhook_bad_signature": len(bad_signatures),
        }
        faults = ",".join(f"{k}={n}" for k, n in sorted(self.faults.items()))
        print(
            f"chaos {a.scenario} {a.duration:.0f}s{a.label}: faults[{faults}] acknowledged={len(acked)} "
            f"succeeded={v['succeeded']} lost={len(lost)} stuck={len(stuck)} failed={len(failed)} "
            f"completed_repeated={len(completed_repeats)} interrupted_repeated={interrupted_repeats} "
            f"events db={len(db_ids)} stream={summary['events_stream']} missing={len(missing)} "
            f"duplicated={summary['events_duplicated']} phantom={len(phantom)} history_errors={len(history_errors)} "
            f"webhooks received={hook_count} missing={len(hook_missing)} repeats={hook_repeats} "
            f"id_changed={len(hook_split)} out_of_order={len(hook_disorder)} bad_signature={len(bad_signatures)} "
            f"recovery p50={p50:.2f}s max={summary['recovery_max_s']:.2f}s (n={len(rec)}) drain={self.drain_seconds:.0f}s "
            f"-> {'FAIL' if bad else 'ok'}",
            flush=True,
        )
        if a.summary_json:
            with open(a.summary_json, "a") as f:
                f.write(json.dumps(summary) + "\n")
        if bad:
            for name, items in violations.items():
                if items:
                    print(f"  {name} ({len(items)}): {items[:8]}", file=sys.stderr)
            for run, step, kind, done, times in completed_repeats[:5]:
                print(f"  {kind} of {run}/{step}: committed success at {done:.0f} ms, calls at "
                      f"{[f'{t:.0f}' for t in times]}", file=sys.stderr)
                for e in histories.get(run, []):
                    print(f"    {e.get('seq')} {e.get('type')} {e.get('step')} {e.get('at')}", file=sys.stderr)
            for note in self.notes[:5]:
                print(f"  note: {note}", file=sys.stderr)
            print(f"  logs: {a.data}/node*.log", file=sys.stderr)
        return 1 if bad else 0

    def shutdown(self):
        self.stop_load.set()
        self.stop_faults.set()
        self.stop_stream.set()
        if self.postgres:
            try:
                if not any(n.ready() for n in self.nodes):
                    self.postgres.start()
            except Exception:  # noqa: BLE001 - best effort while cleaning up
                pass
        for node in self.nodes:
            node.stop()
        self.endpoint.shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--scenario", required=True, choices=["sqlite", "pg2", "pg3", "pg-stop", "sigstop"])
    parser.add_argument("--database", help="PostgreSQL URL of a fresh database (pg2, pg3, pg-stop, sigstop)")
    parser.add_argument("--pg-bin", help="PostgreSQL's bin directory (pg-stop)")
    parser.add_argument("--pg-dir", help="scripts/lib/postgres.sh's directory (pg-stop): data/, server.log")
    parser.add_argument("--pg-user", default="", help="the user PostgreSQL runs as, when not this one (pg-stop)")
    parser.add_argument("--duration", type=parse_duration, default=300.0, help="load duration (default 5m)")
    parser.add_argument("--short", action="store_true", help="about a minute in all: 40 s of light load")
    parser.add_argument("--w1-rate", type=float, default=8.0, help="bench-w1 starts per second")
    parser.add_argument("--mix-rate", type=float, default=2.0, help="chaos-mix starts per second")
    parser.add_argument("--agent-rate", type=float, default=1.0, help="agent starts per second")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--slow", type=float, default=2.0, help="seconds the slow endpoint takes")
    parser.add_argument("--lease-duration", help="--lease-duration of the nodes (sigstop: 3s)")
    parser.add_argument("--drain-timeout", type=float, default=180.0, help="seconds for the runs to end after the load")
    parser.add_argument("--data", help="directory for the nodes' data and logs (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--summary-json", help="append the summary as one JSON line to this file")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    if args.short:
        args.duration = min(args.duration, 40.0)
        args.w1_rate, args.mix_rate, args.agent_rate = 3.0, 1.0, 0.5
        args.drain_timeout = min(args.drain_timeout, 60.0)
    if args.scenario == "sigstop" and not args.lease_duration:
        args.lease_duration = "3s"
    if args.scenario != "sqlite" and not args.database:
        parser.error(f"--scenario {args.scenario} needs --database")
    if args.scenario == "pg-stop" and not (args.pg_bin and args.pg_dir):
        parser.error("--scenario pg-stop needs --pg-bin and --pg-dir")
    if args.scenario == "sqlite":
        args.database = None
    keep = args.data is not None
    args.data = args.data or tempfile.mkdtemp(prefix=f"caravan-chaos-{args.scenario}.")
    os.makedirs(args.data, exist_ok=True)
    args.master_key = base64.b64encode(os.urandom(32)).decode()
    suite = Suite(args)
    status = 2
    try:
        status = suite.run()
    except (RuntimeError, OSError, http.client.HTTPException, subprocess.TimeoutExpired) as error:
        print(f"chaos {args.scenario}{args.label}: could not run the scenario: {error} (logs: {args.data})", flush=True)
        status = 2
    finally:
        suite.shutdown()
    if status == 0 and not keep:
        subprocess.run(["rm", "-rf", args.data], check=False)
    return status


if __name__ == "__main__":
    sys.exit(main())
