"""A fake OpenAI-format model provider: a real HTTP server on loopback that speaks Chat Completions (streamed or
not, tools, structured output, logprobs) and embeddings, records every request, and can be told to fail.

It stands in for what lies outside the machine (an LLM provider); Caravan is always the real server.
"""

import base64
import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_KEY = "sk-fake-provider"


class FakeProvider:
    def __init__(self):
        self.requests = []  # (path, body) of every request
        self.failures = []  # queued (status, retry_after) answers, served before anything else
        self.lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                with provider.lock:
                    provider.requests.append((self.path, body))
                    failure = provider.failures.pop(0) if provider.failures else None
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    return self.send_json(401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error"}})
                if failure:
                    status, retry_after = failure
                    headers = {"Retry-After": retry_after} if retry_after else {}
                    return self.send_json(status, {"error": {"message": "The fake provider failed.", "type": "server_error"}}, headers)
                if self.path == "/v1/embeddings":
                    return self.send_json(200, embeddings(body))
                if self.path != "/v1/chat/completions":
                    return self.send_json(404, {"error": {"message": "No such path."}})
                message = reply(body)
                if body.get("stream"):
                    return self.send_stream(body, message)
                self.send_json(200, completion(body, message))

            def send_json(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def send_stream(self, body, message):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}

                def send(choices, **extra):
                    chunk = dict(base, choices=choices, **extra)
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                    self.wfile.flush()

                send([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
                if message.get("tool_calls"):
                    calls = [dict(call, index=index) for index, call in enumerate(message["tool_calls"])]
                    send([{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": None}])
                    finish = "tool_calls"
                else:
                    text = message["content"]
                    for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
                        send([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
                    finish = "stop"
                send([{"index": 0, "delta": {}, "finish_reason": finish}])
                if (body.get("stream_options") or {}).get("include_usage"):
                    send([], usage=usage(body))
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fail_next(self, status, retry_after=None, times=1):
        with self.lock:
            self.failures.extend([(status, retry_after)] * times)

    def last(self, path="/v1/chat/completions"):
        with self.lock:
            return next(body for p, body in reversed(self.requests) if p == path)

    def stop(self):
        self.server.shutdown()


def last_user_text(body):
    for message in reversed(body["messages"]):
        if message["role"] == "user":
            content = message["content"]
            return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)
    return ""


def sample(schema):
    """A value that matches a (simple) JSON Schema: what a model asked for structured output answers."""
    kind = schema.get("type")
    if kind == "object":
        return {name: sample(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [sample(schema.get("items", {"type": "string"}))]
    return {"integer": 21, "number": 21.5, "boolean": True, "string": "Paris"}.get(kind, "Paris")


def reply(body):
    """The assistant message: a tool call when tools are offered and none was answered yet, JSON for structured
    output, else an echo of the last user message."""
    tools = body.get("tools") or []
    answered = any(message["role"] == "tool" for message in body["messages"])
    if tools and not answered and body.get("tool_choice") != "none":
        function = tools[0]["function"]
        arguments = json.dumps(sample(function.get("parameters", {"type": "object"})))
        return {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": function["name"], "arguments": arguments}}]}
    form = body.get("response_format") or {}
    if form.get("type") == "json_schema":
        return {"role": "assistant", "content": json.dumps(sample(form["json_schema"]["schema"]))}
    if form.get("type") == "json_object":
        return {"role": "assistant", "content": '{"ok": true}'}
    if answered:
        return {"role": "assistant", "content": "The tool said: " + body["messages"][-1]["content"]}
    return {"role": "assistant", "content": "echo: " + last_user_text(body)}


def usage(body):
    prompt = sum(len(json.dumps(message)) for message in body["messages"]) // 4
    return {"prompt_tokens": prompt, "completion_tokens": 5, "total_tokens": prompt + 5}


def completion(body, message):
    choice = {"index": 0, "message": message, "finish_reason": "tool_calls" if message.get("tool_calls") else "stop", "logprobs": None}
    if body.get("logprobs"):
        tokens = (message.get("content") or "").split() or [""]
        top = body.get("top_logprobs") or 0
        choice["logprobs"] = {"content": [{"token": token, "logprob": -0.5, "bytes": list(token.encode()), "top_logprobs": [{"token": token, "logprob": -0.5, "bytes": list(token.encode())}] * top} for token in tokens], "refusal": None}
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": body["model"], "choices": [choice], "usage": usage(body)}


def embeddings(body):
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    dimensions = body.get("dimensions") or 8
    data = []
    for index, text in enumerate(inputs):
        seed = sum(ord(c) * (i + 1) for i, c in enumerate(str(text)))
        vector = [((seed * (j + 3)) % 200) / 100 - 1 for j in range(dimensions)]
        if body.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(len(str(text)) // 4 + 1 for text in inputs)
    return {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
