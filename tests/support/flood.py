"""A bounded flood of xDS streams with bad tokens, as a process of its own (so its CPU is not the
test's event loop): ``python -m tests.support.flood ADDRESS CA_FILE RATE COUNT SECONDS``.

Each stream presents a random ``ilp_`` token, sends one delta request carrying a node and waits
for the server to end it. At most ``COUNT`` streams, for at most ``SECONDS`` seconds, at most
``RATE`` per second, at most 512 in flight on 16 connections. Prints one JSON line: streams
started and ended, how they ended (status codes) and the rate achieved."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import secrets
import sys
import time
from pathlib import Path

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
IN_FLIGHT = 512
CONNECTIONS = 16


async def flood(
    address: str, ca_pem: bytes, rate: float, count: int, seconds: float
) -> dict[str, object]:
    credentials = grpc.ssl_channel_credentials(ca_pem)
    channels = [
        grpc.aio.secure_channel(
            address, credentials, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(CONNECTIONS)
    ]
    methods = [
        ch.stream_stream(
            METHOD,
            request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DeltaDiscoveryResponse.FromString,
        )
        for ch in channels
    ]
    request = discovery_pb2.DeltaDiscoveryRequest(
        node=base_pb2.Node(id="intruder-1", cluster="intruder"),
        type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster",
    )
    codes: collections.Counter[str] = collections.Counter()
    tasks: set[asyncio.Task[None]] = set()
    details: dict[str, str] = {}
    slots = asyncio.Semaphore(IN_FLIGHT)
    started = 0

    async def one(n: int) -> None:
        try:
            call = methods[n % CONNECTIONS](
                metadata=(("authorization", f"Bearer ilp_{secrets.token_urlsafe(32)}"),)
            )
            with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError):
                await call.write(request)  # fails when the server has ended the stream
            code = await call.code()
            codes[code.name] += 1
            if code != grpc.StatusCode.UNAUTHENTICATED:
                details[code.name] = str(await call.details())
        except Exception as exc:  # counted, the flood goes on
            codes[type(exc).__name__] += 1
        finally:
            slots.release()

    begin = time.monotonic()
    deadline = begin + seconds
    while started < count and time.monotonic() < deadline:
        due = begin + started / rate
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        await slots.acquire()
        task = asyncio.create_task(one(started))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        started += 1
    elapsed = time.monotonic() - begin
    async with asyncio.timeout(30):
        await asyncio.gather(*tasks, return_exceptions=True)
    for ch in channels:
        await ch.close()
    return {
        "started": started,
        "ended": sum(codes.values()),
        "codes": dict(codes),
        "details": details,
        "seconds": round(elapsed, 3),
        "rate": round(started / elapsed, 1) if elapsed else 0.0,
    }


def main() -> None:
    address, ca_file, rate, count, seconds = sys.argv[1:6]
    ca_pem = Path(ca_file).read_bytes()
    result = asyncio.run(flood(address, ca_pem, float(rate), int(count), float(seconds)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
