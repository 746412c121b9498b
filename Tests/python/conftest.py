"""Fixtures: a fake provider, and a real `caravan serve` (the binary in CARAVAN_BINARY, SQLite in a temporary
directory) with an organization, an API key, an OpenAI-format provider `fake` (the organization's default, so bare
model names reach it) and an Anthropic-format provider `claude`."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

from fake_provider import API_KEY, FakeProvider

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def call(base, method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


@pytest.fixture(scope="session")
def fake():
    provider = FakeProvider()
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def caravan(fake):
    binary = os.environ.get("CARAVAN_BINARY", os.path.join(ROOT, ".build/debug/caravan"))
    data = tempfile.mkdtemp(prefix="caravan-clients-")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(os.path.join(data, "server.log"), "w")
    process = subprocess.Popen(
        [binary, "serve", "--port", str(port), "--data", data, "--egress-allow", "127.0.0.1", "--gateway-cache-ttl", "60s"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError("caravan serve exited: " + open(log.name).read())
                time.sleep(0.1)
        signup = call(base, "POST", "/v1/auth/signup", {"email": "owner@example.com", "password": "clients-test-Passw0rd!", "organization": "Clients"})
        key = call(base, "POST", "/v1/api-keys", {"name": "clients", "role": "owner"}, signup["access_token"])["key"]
        call(base, "PUT", "/v1/secrets/fake_key", {"value": API_KEY}, key)
        call(base, "PUT", "/v1/providers/fake", {"kind": "openai", "base_url": fake.base_url, "api_key_secret": "fake_key", "models": ["m1", "m2", "emb"], "max_retries": 0, "default": True}, key)
        call(base, "PUT", "/v1/providers/claude", {"kind": "anthropic", "base_url": fake.base_url, "api_key_secret": "fake_key", "models": ["haiku"]}, key)
        yield {"base_url": base + "/v1", "api_key": key}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def client(caravan):
    from openai import OpenAI

    return OpenAI(base_url=caravan["base_url"], api_key=caravan["api_key"], max_retries=0)
