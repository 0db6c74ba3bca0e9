"""A gRPC client process for proxyless tests (see :class:`tests.support.grpc_apps.GrpcClient`).

Reads one JSON request per line on stdin — ``{"target", "count", "metadata", "timeout"}`` —
and answers each with one JSON line: per call, the reply or the status code's name. Channels
are kept per target, so xDS updates reach the same channel between requests."""

from __future__ import annotations

import json
import sys

import grpc

from tests.support.grpc_apps import METHOD


def main() -> None:
    channels: dict[str, grpc.Channel] = {}
    for line in sys.stdin:
        request = json.loads(line)
        target = request["target"]
        channel = channels.get(target)
        if channel is None:
            channel = channels[target] = grpc.insecure_channel(target)
        hello = channel.unary_unary(METHOD)
        metadata = tuple(request["metadata"].items())
        results = []
        for _ in range(request["count"]):
            try:
                reply = hello(b"hi", timeout=request["timeout"], metadata=metadata)
                results.append(reply.decode())
            except grpc.RpcError as exc:
                results.append(exc.code().name)
        print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
