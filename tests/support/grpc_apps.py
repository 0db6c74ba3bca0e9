"""Real gRPC parts for proxyless tests: a greeter server (a generic unary handler, bytes in
and out, no generated code) and a client process driven over stdin, whose channel resolves
``xds:///`` targets with the bootstrap in its environment (gRPC reads it once per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

SERVICE = "interlock.demo.Greeter"
METHOD = f"/{SERVICE}/Hello"


class Greeter:
    """A gRPC server on 127.0.0.1 answering ``Hello`` with its instance id, or failing every
    call with ``fail_with`` (settable while it runs)."""

    def __init__(self, instance: str, fail_with: grpc.StatusCode | None = None) -> None:
        self.instance = instance
        self.fail_with = fail_with
        self.calls = 0
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.unary_unary_rpc_method_handler(self._hello)
        self.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(SERVICE, {"Hello": handler})]
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _hello(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.calls += 1
        if self.fail_with is not None:
            context.abort(self.fail_with, f"{self.instance} fails on purpose")
        return self.instance.encode()

    def stop(self) -> None:
        self.server.stop(0)


class GrpcClient:
    """``python -m tests.support.grpc_client`` with ``bootstrap`` as its xDS bootstrap: each
    :meth:`call` makes ``count`` calls and returns, per call, the instance that answered or
    the status code's name."""

    def __init__(self, bootstrap: Path, log: Path) -> None:
        env = dict(
            os.environ,
            GRPC_XDS_BOOTSTRAP=str(bootstrap),
            GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS="true",
        )
        env.pop("GRPC_XDS_BOOTSTRAP_CONFIG", None)
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.grpc_client"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=Path(__file__).resolve().parents[2],
            start_new_session=True,
        )

    def call(
        self,
        target: str,
        count: int = 1,
        metadata: dict[str, str] | None = None,
        timeout: float = 5.0,
    ) -> list[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        request = {"target": target, "count": count, "metadata": metadata or {}}
        request["timeout"] = timeout
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the gRPC client exited {self.proc.wait(5)}")
        results: Any = json.loads(line)
        return [str(r) for r in results]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._log.close()
