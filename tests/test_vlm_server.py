"""The OpenAI-compatible server backend, over real HTTP on loopback.

End to end: a small server that the test starts (docroute.extractors.vlm.serve) serves the tiny
Qwen2.5-VL through the transformers backend, so decoding is real; the client must give the same answer
as the transformers backend called directly. Retries, the concurrency limit, timeouts and the
validation of unconstrained replies run against a scripted loopback server.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import tiny_vlm

from docroute.extractors.vlm import VlmOptions, VlmRequest, get_backend
from docroute.extractors.vlm.server import UNKNOWN_CONFIDENCE, OpenAIServerVlm
from docroute.schemas.targets import ChartData, HandwrittenText, Invoice

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def page():
    return tiny_vlm.sample_images(["invoice_two_page.pdf"])["invoice_two_page.pdf"]


@pytest.fixture(scope="module")
def served():
    """The tiny model served on 127.0.0.1 by the test's own server: (direct backend, base URL)."""
    from docroute.extractors.vlm.serve import serve_in_thread

    backend = get_backend("transformers", tiny_vlm.options("qwen2_5_vl"))
    server, url = serve_in_thread(backend)
    yield backend, url
    server.shutdown()
    server.server_close()


def client_options(url: str, **changes) -> VlmOptions:
    o = tiny_vlm.options("qwen2_5_vl")
    base = dict(model=None, server_url=url, min_pixels=o.min_pixels, max_pixels=o.max_pixels,
                max_new_tokens=o.max_new_tokens, max_string_chars=o.max_string_chars,
                max_list_items=o.max_list_items, concurrency=2, timeout_s=60, backoff_s=0.01)
    return VlmOptions(**(base | changes))


def test_server_end_to_end_matches_the_direct_backend(served, page):
    direct, url = served
    client = OpenAIServerVlm(client_options(url))
    reqs = [VlmRequest(images=tuple(page), schema=Invoice), VlmRequest(images=(page[0],), schema=ChartData),
            VlmRequest(images=(page[1],), schema=HandwrittenText)]
    over_http = client.extract_batch(reqs)
    local = direct.extract_batch(reqs)
    for h, d, req in zip(over_http, local, reqs, strict=True):
        assert h.status == "ok" and h.raw_text == d.raw_text and h.data == d.data
        req.schema.model_validate(h.data)
        assert (h.prompt_tokens, h.output_tokens) == (d.prompt_tokens, d.output_tokens)
        assert h.model == "qwen2_5_vl"  # the served name, read from /v1/models
        assert h.field_confidence.keys() == d.field_confidence.keys()
        assert all(abs(h.field_confidence[k] - d.field_confidence[k]) < 1e-4 for k in d.field_confidence)


def test_server_truncation_is_retried_with_more_tokens(served, page):
    direct, url = served
    req = VlmRequest(images=(page[0],), schema=ChartData)
    full = direct.extract_batch([req])[0]
    half = OpenAIServerVlm(client_options(url, max_new_tokens=full.output_tokens // 2 + 1)).extract(
        [page[0]], ChartData, "")
    assert (half.status, half.attempts, half.raw_text) == ("ok", 2, full.raw_text)
    cut = OpenAIServerVlm(client_options(url, max_new_tokens=8)).extract([page[0]], ChartData, "")
    assert cut.status == "truncated" and cut.attempts == 2 and cut.data is None


def test_the_served_endpoint_requires_json_schema(served):
    import httpx

    _, url = served
    body = {"model": "qwen2_5_vl", "messages": [{"role": "user", "content": "hi"}],
            "guided_json": {"type": "object"}}  # the old field: not a constraint any more
    resp = httpx.post(url + "/chat/completions", json=body, timeout=30)
    assert resp.status_code == 400 and "json_schema" in resp.text


class Scripted:
    """A loopback chat-completions server answering from a script; records what it got."""

    def __init__(self, answers, delay_s: float = 0.0):
        self.answers, self.delay_s = list(answers), delay_s
        self.bodies: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.bodies.append(body)
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                    code, payload = outer.answers.pop(0) if len(outer.answers) > 1 else outer.answers[0]
                time.sleep(outer.delay_s)
                with outer.lock:
                    outer.in_flight -= 1
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def reply(content: str, finish: str = "stop") -> tuple[int, dict]:
    return 200, {"model": "served-model", "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                                       "finish_reason": finish}],
                 "usage": {"prompt_tokens": 11, "completion_tokens": 7}}


def test_retries_with_backoff_then_validates_an_unconstrained_reply(page):
    srv = Scripted([(503, {"error": "busy"}), (503, {"error": "busy"}), reply('{"lines": ["a", "b"]}')])
    try:
        res = OpenAIServerVlm(client_options(srv.url, model="served-model")).extract([page[0]], HandwrittenText, "")
        assert res.status == "ok" and res.data == {"lines": ["a", "b"]} and len(srv.bodies) == 3
        assert res.field_confidence == {"lines": UNKNOWN_CONFIDENCE}  # no logprobs in the reply
        body = srv.bodies[-1]
        assert body["response_format"]["type"] == "json_schema" and "guided_json" not in body
        assert body["response_format"]["json_schema"]["schema"]["required"] == ["lines"]
        assert body["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
        assert body["logprobs"] is True and body["temperature"] == 0.0
    finally:
        srv.close()
    # a server that ignores the constraint (as current vLLM does with guided_json): validated anyway
    srv = Scripted([reply("Sure! The handwriting says: hello")])
    try:
        res = OpenAIServerVlm(client_options(srv.url, model="m")).extract([page[0]], HandwrittenText, "")
        assert res.status == "invalid" and res.data is None and "not JSON" in res.error
    finally:
        srv.close()
    srv = Scripted([(503, {"error": "busy"})])
    try:
        res = OpenAIServerVlm(client_options(srv.url, model="m", retries=2)).extract([page[0]], HandwrittenText, "")
        assert res.status == "failed" and "3 tries" in res.error and len(srv.bodies) == 3
    finally:
        srv.close()


def test_concurrency_limit_and_timeout(page):
    srv = Scripted([reply('{"lines": []}')], delay_s=0.3)
    try:
        client = OpenAIServerVlm(client_options(srv.url, model="m", concurrency=2))
        results = client.extract_batch([VlmRequest(images=(page[0],), schema=HandwrittenText)] * 6)
        assert [r.status for r in results] == ["ok"] * 6
        assert srv.max_in_flight == 2
        slow = OpenAIServerVlm(client_options(srv.url, model="m", timeout_s=0.05)).extract([page[0]], HandwrittenText, "")
        assert slow.status == "timeout"
    finally:
        srv.close()
