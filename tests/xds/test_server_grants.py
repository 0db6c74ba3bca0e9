"""Stream grants: the names a stream may subscribe to, and ending every stream of a principal."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.server import Metadata, StreamGrant
from tests.support.xds_client import make_secret, mesh_resources, running_harness


@pytest.mark.parametrize("variant", ["sotw", "delta"])
async def test_a_stream_gets_nothing_for_names_outside_its_grant(variant: str) -> None:
    denied: list[tuple[str, frozenset[str]]] = []

    async def grant(node: Any, metadata: Metadata) -> StreamGrant:
        return StreamGrant(
            "p1",
            principal="token-1",
            allowed={rt.SECRET: frozenset({"default"})},
            on_denied=lambda type_url, names: denied.append((type_url, names)),
        )

    async with running_harness(grant) as harness:
        resources = mesh_resources(secrets=())
        resources[rt.SECRET] = [make_secret("default", "mine"), make_secret("other", "theirs")]
        harness.cache.set_snapshot("p1", resources, revision=1)
        async with harness.client("n1", variant=variant) as client:
            await client.subscribe(rt.SECRET, ["other", "spiffe://x/ns/default/sa/b"])
            await client.subscribe(rt.SECRET, ["default"])
            response = await client.recv_type(rt.SECRET)
            assert response.names == ["default"]
            assert client.pending() == []
    assert {n for _, names in denied for n in names} == {"other", "spiffe://x/ns/default/sa/b"}
    assert {t for t, _ in denied} == {rt.SECRET}


async def test_terminate_ends_every_stream_of_a_principal_and_only_those() -> None:
    async def grant(node: Any, metadata: Metadata) -> StreamGrant:
        return StreamGrant(str(node.id), principal=f"token-of-{node.id}")

    async with running_harness(grant) as harness:
        for key in ("a", "b"):
            harness.cache.set_snapshot(key, mesh_resources(), revision=1)
        async with harness.client("a") as a, harness.client("b") as b:
            for client in (a, b):
                await client.subscribe(rt.CLUSTER)
                await client.recv_type(rt.CLUSTER)
            assert set(harness.server.principals()) == {"token-of-a", "token-of-b"}
            closed = harness.server.terminate(
                "token-of-a", grpc.StatusCode.UNAUTHENTICATED, "revoked"
            )
            assert closed == 1
            ended = await a.finished()
            assert (ended.code, ended.details) == (grpc.StatusCode.UNAUTHENTICATED, "revoked")
            harness.cache.set_snapshot("b", mesh_resources({"a": 1, "c": 2}), revision=2)
            assert "c" in (await b.recv_type(rt.CLUSTER)).names  # b still served
            assert set(harness.server.principals()) == {"token-of-b"}


async def test_a_type_changed_but_not_yet_pushed_is_not_reported_in_sync_at_a_new_revision() -> (
    None
):
    """The order the glue relies on: new secrets (derived key) then a new revision of the view.
    Until the stream has pushed the new secrets, status must not say it holds revision 2."""

    async def grant(node: Any, metadata: Metadata) -> StreamGrant:
        return StreamGrant("p1")

    async with running_harness(grant) as harness:
        view = mesh_resources(secrets=())
        harness.cache.set_snapshot("view", view, revision=1)
        harness.cache.set_derived("p1", "view", {rt.SECRET: [make_secret("default", "one")]})
        async with harness.client("n1", auto_ack=True) as client:
            await client.subscribe(rt.CLUSTER)
            await client.subscribe(rt.SECRET, ["default"])
            await client.wait_for(lambda c: c.view(rt.SECRET).acks >= 1)
            await harness.barrier_status(lambda p: p.synced_revision == 1)
            # No await between these: the stream's writer has not run when revision 2 lands.
            harness.cache.set_derived("p1", "view", {rt.SECRET: [make_secret("default", "two")]})
            harness.cache.set_snapshot("view", view, revision=2)
            (proxy,) = harness.status.proxies()
            assert proxy.types[rt.SECRET].revision_acked != 2
            assert proxy.synced_revision != 2
            await client.wait_for(lambda c: c.view(rt.SECRET).acks >= 2)
            await harness.barrier_status(lambda p: p.synced_revision == 2)


@pytest.mark.parametrize("ending", ["client", "terminate"])
async def test_on_close_is_called_once_when_a_stream_ends_however_it_ends(ending: str) -> None:
    closed: list[str] = []

    async def grant(node: Any, metadata: Metadata) -> StreamGrant:
        node_id = str(node.id)
        return StreamGrant("p1", principal="t1", on_close=lambda: closed.append(node_id))

    async with running_harness(grant) as harness:
        harness.cache.set_snapshot("p1", mesh_resources(), revision=1)
        async with harness.client("n1") as client:
            await client.subscribe(rt.CLUSTER)
            await client.recv_type(rt.CLUSTER)
            assert closed == []
            if ending == "terminate":
                harness.server.terminate("t1", grpc.StatusCode.UNAUTHENTICATED, "revoked")
                await client.finished()
        for _ in range(200):  # the server ends its side as the client's goes away
            if closed:
                break
            await asyncio.sleep(0.01)
    assert closed == ["n1"]
