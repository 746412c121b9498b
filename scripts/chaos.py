#!/usr/bin/env python3
"""W3 crash-recovery scenario (see /work/shared/workloads.md), driven against a real `caravan` binary.

Runs a counting HTTP endpoint on 127.0.0.1, starts the server, signs up, creates an API key, puts bench-w3,
starts the runs over a few keep-alive connections, SIGKILLs the server `--kill-after` seconds later, restarts it
(same --node-id, or a new one with --new-node-id), waits until every run has ended, and prints one summary line.
Exits 1 on any violation, 2 when the scenario itself could not be run. Python 3 standard library only; every
connection goes to 127.0.0.1 and every wait is bounded. Normally started by scripts/chaos.
"""
import argparse
import base64
import http.client
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter


class Counts:
    """Calls of the endpoint by (path, Idempotency-Key) (the key is `run:step`), each with the time it came."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = {}

    def add(self, path, key):
        with self.lock:
            self.calls.setdefault((path, key), []).append(time.monotonic())

    def snapshot(self):
        with self.lock:
            return {key: list(times) for key, times in self.calls.items()}


def start_endpoint(counts):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            path = self.path.split("?")[0]
            counts.add(path, self.headers.get("Idempotency-Key") or "")
            if path == "/slow":
                time.sleep(2)
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

        def handle(self):
            try:
                super().handle()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server was killed while it waited for an answer

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Server:
    """One `caravan serve` process; its log goes to a file."""

    def __init__(self, args, node_id, log_path):
        command = [args.binary, "serve", "--port", "0", "--data", args.data, "--node-id", node_id,
                   "--master-key", args.master_key, "--egress-allow", "127.0.0.1"]
        if args.database:
            command += ["--database", args.database]
        if args.lease_duration:
            command += ["--lease-duration", args.lease_duration]
        env = dict(os.environ, CARAVAN_EGRESS_ALLOW="127.0.0.1", CARAVAN_LOG_FORMAT="json")
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.log_offset = os.path.getsize(log_path)  # the log of an earlier life comes before
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.port = None

    def wait_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_offset)
                text = f.read().decode("utf-8", "replace")
            ports = [m.group(1) for line in text.splitlines() if "Caravan is listening" in line
                     for m in [re.search(r'"server\.port":"?(\d+)', line)] if m]
            if ports:
                self.port = int(ports[-1])
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("the server did not start; see " + self.log_path)

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, _ = request(self.port, "GET", "/readyz", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("the server did not become ready; see " + self.log_path)

    def kill(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.log.close()


def request(port, method, path, body=None, headers=None, timeout=10, connection=None):
    own = connection is None
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body.encode() if isinstance(body, str) else body
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        payload = response.read()
        return response.status, payload
    finally:
        if own:
            conn.close()


def bootstrap(port):
    status, body = request(port, "POST", "/v1/auth/signup", json.dumps({
        "email": "chaos@example.com", "password": "a long and unusual chaos passphrase", "organization": "Chaos"}),
        {"Content-Type": "application/json"})
    if status not in (200, 201):
        raise RuntimeError(f"signup answered {status}: {body[:300]!r}")
    token = json.loads(body)["access_token"]
    status, body = request(port, "POST", "/v1/api-keys", json.dumps({"name": "chaos", "role": "developer"}),
                           {"Content-Type": "application/json", "Authorization": "Bearer " + token})
    if status not in (200, 201):
        raise RuntimeError(f"creating an API key answered {status}: {body[:300]!r}")
    return {"Authorization": "Bearer " + json.loads(body)["key"]}


def put_workflow(port, auth, target):
    yaml = f"""name: bench-w3
steps:
  - {{id: a, http: {{method: POST, url: "http://127.0.0.1:{target}/a"}}}}
  - {{id: b, needs: [a], http: {{method: POST, url: "http://127.0.0.1:{target}/slow"}}, timeout: 10s}}
  - {{id: c, needs: [b], http: {{method: POST, url: "http://127.0.0.1:{target}/c"}}}}
"""
    status, body = request(port, "PUT", "/v1/workflows/bench-w3", yaml, dict(auth, **{"Content-Type": "application/yaml"}))
    if status not in (200, 201):
        raise RuntimeError(f"PUT bench-w3 answered {status}: {body[:300]!r}")


def start_runs(port, auth, count, connections, acknowledged, stop_at):
    """Starts `count` runs over `connections` keep-alive connections; records the ids the server acknowledged."""
    lock = threading.Lock()
    next_index = [0]

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < stop_at:
            with lock:
                if next_index[0] >= count:
                    break
                next_index[0] += 1
            try:
                status, body = request(port, "POST", "/v1/workflows/bench-w3/runs", '{"input": {}}',
                                       dict(auth, **{"Content-Type": "application/json"}), connection=conn)
            except (OSError, http.client.HTTPException):
                break  # the server died under us: the runs not yet acknowledged do not count
            if status in (200, 201, 202):
                with lock:
                    acknowledged.append(json.loads(body)["id"])
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    return threads


def list_runs(port, auth):
    """Every run of bench-w3 by id, with its status (paged)."""
    runs, cursor = {}, None
    for _ in range(1000):
        path = "/v1/runs?workflow=bench-w3&limit=500" + (f"&cursor={cursor}" if cursor else "")
        status, body = request(port, "GET", path, headers=auth)
        if status != 200:
            raise RuntimeError(f"listing runs answered {status}: {body[:300]!r}")
        page = json.loads(body)
        for item in page.get("items", []):
            runs[item["id"]] = item["status"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--database", help="PostgreSQL URL of a fresh database (default: SQLite in --data)")
    parser.add_argument("--data", help="data directory (default: a temporary one)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--kill-after", type=float, default=1.0, help="seconds from the first start request")
    parser.add_argument("--new-node-id", action="store_true", help="restart under a new --node-id (takeover)")
    parser.add_argument("--lease-duration", help="--lease-duration of both server lives (default: the server's)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the runs after the restart")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds to keep counting after the last run ended")
    parser.add_argument("--allow-inflight-repeat", action="store_true",
                        help="accept a second call of /a or /c that was in flight at the kill (the engine's guarantee)"
                             "; by default any second call fails, as W3 asks")
    parser.add_argument("--label", default="")
    args = parser.parse_args()

    keep = args.data is not None
    args.data = args.data or tempfile.mkdtemp(prefix="caravan-chaos.")
    os.makedirs(args.data, exist_ok=True)
    args.master_key = base64.b64encode(os.urandom(32)).decode()
    log_path = os.path.join(args.data, "server.log")
    counts = Counts()
    endpoint = start_endpoint(counts)
    target = endpoint.server_address[1]
    first_node = "chaos-" + uuid.uuid4().hex[:8]
    second_node = "chaos-" + uuid.uuid4().hex[:8] if args.new_node_id else first_node
    backend = "postgres" if args.database else "sqlite"
    mode = "new-node-id" if args.new_node_id else "same-node-id"
    second = None
    try:
        first = Server(args, first_node, log_path)
        first.wait_listening(60)
        first.wait_ready(60)
        auth = bootstrap(first.port)
        put_workflow(first.port, auth, target)

        acknowledged = []
        started = time.monotonic()
        kill_at = started + args.kill_after
        threads = start_runs(first.port, auth, args.runs, args.connections, acknowledged, stop_at=kill_at)
        time.sleep(max(0.0, kill_at - time.monotonic()))
        first.kill()
        killed_at = time.monotonic()
        for thread in threads:
            thread.join(timeout=15)
        with open(log_path, "ab") as f:
            f.write(b"\n=== chaos: SIGKILL, restart ===\n")
        acked = set(acknowledged)

        second = Server(args, second_node, log_path)
        second.wait_listening(60)
        second.wait_ready(60)
        ready_at = time.monotonic()
        deadline = ready_at + args.timeout
        terminal = {"succeeded", "failed", "cancelled"}
        runs = {}
        ended_at = None
        while time.monotonic() < deadline:
            runs = list_runs(second.port, auth)
            if all(runs.get(run) in terminal for run in acked) and all(s in terminal for s in runs.values()):
                ended_at = time.monotonic()
                break
            time.sleep(0.1)
        time.sleep(args.settle)
        calls = counts.snapshot()
        histories = {}  # the events of a few runs whose step ran twice after the restart, to show why
        twice = sorted({key.rpartition(":")[0] for (path, key), times in calls.items()
                        if path in ("/a", "/c") and sum(1 for t in times if t >= killed_at) > 1})
        for run in twice[:3]:
            status, body = request(second.port, "GET", f"/v1/runs/{run}/events?limit=500", headers=auth)
            if status == 200:
                histories[run] = [(e.get("seq"), e.get("type"), e.get("step"), e.get("at"))
                                  for e in json.loads(body).get("items", [])]
    except (RuntimeError, OSError, http.client.HTTPException, subprocess.TimeoutExpired) as error:
        print(f"chaos W3 {backend} {mode}{args.label}: could not run the scenario: {error} (log: {log_path})")
        return 2
    finally:
        for server in [locals().get("first"), second]:
            if server is not None:
                server.stop()
        endpoint.shutdown()

    # A step in flight at the kill may be called once more (same key): its answer may not have been committed.
    # A step called twice after the restart, or three times in all, ran again after a commit of the restarted
    # server: always a violation.
    per_run = {"/a": Counter(), "/c": Counter(), "/slow": Counter()}
    after_restart = {"/a": Counter(), "/c": Counter(), "/slow": Counter()}
    bad_keys = 0
    for (path, key), times in calls.items():
        run, _, step = key.rpartition(":")
        if path not in per_run or step != path.strip("/").replace("slow", "b"):
            bad_keys += len(times)
            continue
        per_run[path][run] += len(times)
        after_restart[path][run] += sum(1 for t in times if t >= killed_at)
    succeeded = [run for run in acked if runs.get(run) == "succeeded"]
    lost = [run for run in acked if run not in runs]
    stuck = sorted(run for run, status in runs.items() if status not in terminal)
    not_succeeded = sorted(run for run, status in runs.items() if status != "succeeded")
    double_a = sorted(run for run, n in per_run["/a"].items() if n > 1)
    double_c = sorted(run for run, n in per_run["/c"].items() if n > 1)
    bad_a = sorted(run for run in double_a if per_run["/a"][run] > 2 or after_restart["/a"][run] > 1)
    bad_c = sorted(run for run in double_c if per_run["/c"][run] > 2 or after_restart["/c"][run] > 1)
    slow_3 = sorted(run for run, n in per_run["/slow"].items() if n > 2)
    missing_c = sorted(run for run in runs if runs[run] == "succeeded" and per_run["/c"][run] == 0)
    recover = f"{ended_at - ready_at:.1f}s" if ended_at else f">{args.timeout:.0f}s"
    violations = len(acked) - len(succeeded) + len(lost) + len(stuck) + len(not_succeeded) + len(bad_a) \
        + len(bad_c) + (0 if args.allow_inflight_repeat else len(double_a) + len(double_c)) + len(slow_3) + len(missing_c) + bad_keys
    print(
        f"chaos W3 {backend} {mode}{args.label}: acknowledged={len(acked)}/{args.runs} runs={len(runs)} "
        f"succeeded={len(succeeded)} lost={len(lost)} stuck={len(stuck)} not_succeeded={len(not_succeeded)} "
        f"a>1={len(double_a)} c>1={len(double_c)} (after restart: a={len(bad_a)} c={len(bad_c)}) slow>2={len(slow_3)} c_missing={len(missing_c)} "
        f"bad_keys={bad_keys} recover={recover} -> {'FAIL' if violations else 'ok'}",
        flush=True,
    )
    if violations:
        for name, ids in [("lost", lost), ("stuck", stuck), ("not succeeded", not_succeeded), ("/a twice after restart", bad_a),
                          ("/c twice after restart", bad_c), ("/a in flight at kill, called again", double_a),
                          ("/c in flight at kill, called again", double_c), ("/slow > 2", slow_3), ("/c missing", missing_c)]:
            if ids:
                print(f"  {name}: {' '.join(ids[:20])}", file=sys.stderr)
        for run, events in histories.items():
            print(f"  events of {run}:", file=sys.stderr)
            for event in events:
                print(f"    {event}", file=sys.stderr)
        print(f"  server log: {log_path}", file=sys.stderr)
    elif not keep:
        subprocess.run(["rm", "-rf", args.data], check=False)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
