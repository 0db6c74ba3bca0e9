"""Tracing end to end: a Telemetry resource points the mesh at a (stub) Zipkin collector on
loopback; a request through two sidecars yields spans from both, sharing one trace id."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mesh
from tests.support.mesh import wait_until

pytestmark = pytest.mark.e2e


class ZipkinStub:
    """Accepts POST /api/v2/spans (Zipkin JSON v2) and keeps every span."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = b""
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    body += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()  # the empty line after the last chunk
                return body

            def do_POST(self) -> None:
                body = self._body()
                if self.path == "/api/v2/spans":
                    stub.spans.extend(json.loads(body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def zipkin() -> Iterator[ZipkinStub]:
    stub = ZipkinStub()
    yield stub
    stub.close()


def test_spans_from_both_sidecars_share_one_trace_id(mesh: Mesh, zipkin: ZipkinStub) -> None:
    telemetry = {
        "apiVersion": "interlock.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": "mesh-tracing", "namespace": "default"},
        "spec": {
            "tracing": {
                "provider": "zipkin",
                "address": f"127.0.0.1:{zipkin.port}",
                "randomSamplingPercentage": 100,
            }
        },
    }
    _, a = mesh.service("a", "a-1")
    mesh.service("b", "b-1")
    with mesh.server.api() as api:
        r = api.post("/v1/resources", json=telemetry)
        assert r.status_code in (200, 201), r.text
        revision = r.json()["revision"]
        assert api.get(f"/v1/revisions/{revision}", params={"wait": 10}).json()["proxies"][
            "complete"
        ]

    for _ in range(10):
        r = httpx.get(
            f"http://127.0.0.1:{a.outbound_port}/traced", headers={"Host": "b"}, timeout=5
        )
        assert r.status_code == 200

    def both_sides() -> set[str]:
        by_trace: dict[str, set[str]] = {}
        for span in zipkin.spans:
            service = span.get("localEndpoint", {}).get("serviceName", "")
            by_trace.setdefault(span["traceId"], set()).add(service)
        return next((t for t, s in by_trace.items() if {"a", "b"} <= s), "") and {"ok"}

    wait_until(both_sides, 20, what="spans from a's and b's sidecars in one trace")
    trace = next(
        t
        for t in {s["traceId"] for s in zipkin.spans}
        if {"a", "b"}
        <= {
            s.get("localEndpoint", {}).get("serviceName") for s in zipkin.spans if s["traceId"] == t
        }
    )
    kinds = {s.get("kind") for s in zipkin.spans if s["traceId"] == trace}
    assert {"CLIENT", "SERVER"} <= kinds, kinds
