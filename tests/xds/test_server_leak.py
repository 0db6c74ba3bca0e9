"""1,000 streams opened and closed every way a proxy can (cut before its first request, cut while
the open hook is still deciding, cut mid-handshake, rejected, ended politely, delta and SotW):
memory, asyncio tasks and file descriptors come back to where they were."""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any

import grpc

from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.server import Metadata, StreamRejected
from tests.support.xds_client import Harness, XdsClient, mesh_resources, running_harness

CYCLES = 1000
CONCURRENCY = 8


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def open_stream(node: Any, metadata: Metadata) -> str:
    if node.id.startswith("slow"):
        await asyncio.Event().wait()  # never decides: only the proxy going away ends this
    if node.id.startswith("deny"):
        raise StreamRejected(grpc.StatusCode.PERMISSION_DENIED, "not on the list")
    return "shared"


async def one_stream(harness: Harness, n: int) -> None:
    kind = n % 7
    variant = "delta" if n % 2 else "sotw"
    node = {1: "slow", 4: "deny"}.get(kind, "proxy") + f"-{n}"
    client: XdsClient = harness.client(node, variant=variant)
    await client.start()
    try:
        if kind == 0:
            return  # cut before the first request
        await client.subscribe(rt.CLUSTER)
        if kind == 1:
            return  # cut while the open hook is pending
        if kind == 2:
            return  # cut right after the first request, before any answer
        if kind == 4:
            ended = await client.finished()
            assert ended.code == grpc.StatusCode.PERMISSION_DENIED
            return
        response = await client.recv()
        if kind == 3:
            return  # cut with a response un-ACKed
        await client.ack(response)
        await client.subscribe(rt.ENDPOINT, ["a"])
        await client.ack(await client.recv())
        if kind == 5:
            await client.half_close()  # the proxy ends the stream itself
            assert (await client.finished()).code == grpc.StatusCode.OK
    finally:
        await client.close()


async def run_cycles(harness: Harness, start: int, count: int) -> None:
    pending = iter(range(start, start + count))

    async def worker() -> None:
        for n in pending:
            await one_stream(harness, n)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def quiesce(harness: Harness) -> None:
    """Wait until the server has let go of every stream."""
    async with asyncio.timeout(30):
        while True:
            busy = (
                harness.server.streams or harness.status.proxies() or harness.cache.watched_keys()
            )
            if not busy:
                break
            await asyncio.sleep(0.02)
    for _ in range(3):
        await asyncio.sleep(0.05)
        gc.collect()


async def test_a_thousand_streams_leave_nothing_behind() -> None:
    async with running_harness(open_stream) as harness:
        harness.cache.set_snapshot("shared", mesh_resources({"a": 1, "b": 2}), revision=1)
        await run_cycles(harness, 0, 140)  # warm up gRPC's pools and caches
        await quiesce(harness)
        base_rss, base_tasks, base_fds = rss_bytes(), len(asyncio.all_tasks()), open_fds()

        await run_cycles(harness, 140, CYCLES)
        await quiesce(harness)

        grown = rss_bytes() - base_rss
        assert grown < 20 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB"
        assert len(asyncio.all_tasks()) == base_tasks
        assert open_fds() == base_fds
        assert harness.server._sessions == {}
