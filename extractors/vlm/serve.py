"""A minimal OpenAI-compatible chat-completions server around the transformers backend.

For development and tests, not for scale (serve with vLLM or SGLang for that): it answers
``GET /v1/models`` and ``POST /v1/chat/completions`` with images as data URLs and
``response_format: {"type": "json_schema"}``, decoding with the same constrained decoder as the
``transformers`` backend, one request at a time. Like current vLLM it ignores unknown fields such as
the old ``guided_json``. It listens on loopback unless told otherwise.

    python -m docroute.extractors.vlm.serve --model /path/to/Qwen2.5-VL-3B-Instruct --port 8000
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from docroute.extractors.vlm.images import decode_data_url


def _job(body: dict[str, Any]):
    from docroute.extractors.vlm.hf_decode import Job

    images, texts = [], []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content or []:
            if part.get("type") == "image_url":
                url = part["image_url"]["url"] if isinstance(part.get("image_url"), dict) else part.get("image_url")
                images.append(decode_data_url(url))
            elif part.get("type") == "text":
                texts.append(part.get("text", ""))
    rf = body.get("response_format") or {}
    if rf.get("type") != "json_schema" or not isinstance(rf.get("json_schema", {}).get("schema"), dict):
        raise ValueError("this server decodes only with response_format {'type': 'json_schema', 'json_schema': {'schema': ...}}")
    return Job(tuple(images), rf["json_schema"]["schema"], "\n".join(texts))


def make_server(backend, host: str = "127.0.0.1", port: int = 0, served_name: str | None = None) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) for a loaded ``TransformersVlm``; ``port=0`` picks a free port."""
    name = served_name or backend.model_name

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # quiet
            pass

        def _reply(self, code: int, payload: dict) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                return self._reply(200, {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "docroute"}]})
            return self._reply(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._reply(404, {"error": {"message": f"no route {self.path}"}})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                job = _job(body)
            except (ValueError, KeyError, TypeError) as exc:
                return self._reply(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})
            max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or backend.options.max_new_tokens)
            gen = backend.generate_raw(job, max_tokens)
            if isinstance(gen, str):
                return self._reply(503, {"error": {"message": gen}})
            body_tokens = len(gen.token_bytes)
            choice: dict[str, Any] = {
                "index": 0, "message": {"role": "assistant", "content": gen.text},
                "finish_reason": "stop" if gen.finish == "stop" else "length",
                "stop_reason": None if gen.finish in ("stop", "length") else f"docroute:{gen.finish}",
            }
            if body.get("logprobs"):
                choice["logprobs"] = {"content": [
                    {"token": tb.decode("utf-8", errors="replace"), "logprob": lp, "bytes": list(tb), "top_logprobs": []}
                    for tb, lp in zip(gen.token_bytes, gen.logprobs[:body_tokens], strict=True)
                ]}
            self._reply(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": name, "choices": [choice],
                "usage": {"prompt_tokens": gen.prompt_tokens, "completion_tokens": len(gen.token_ids),
                          "total_tokens": gen.prompt_tokens + len(gen.token_ids)},
            })

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_thread(backend, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start serving in a daemon thread; returns (server, base URL ending in /v1). Stop with shutdown()."""
    server = make_server(backend, host, port)
    threading.Thread(target=server.serve_forever, daemon=True, name="docroute-vlm-serve").start()
    return server, f"http://{server.server_address[0]}:{server.server_address[1]}/v1"


def main(argv: list[str] | None = None) -> None:
    from docroute.extractors.vlm.base import VlmOptions
    from docroute.extractors.vlm.hf import TransformersVlm

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="local model folder")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--max-pixels", type=int, default=VlmOptions.max_pixels)
    args = ap.parse_args(argv)
    backend = TransformersVlm(VlmOptions(model=args.model, max_pixels=args.max_pixels))
    server = make_server(backend, args.host, args.port)
    print(f"serving {backend.model_name} on http://{args.host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
