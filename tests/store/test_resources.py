"""Policy resources in the store, on SQLite and PostgreSQL: one revisioned transaction per
apply (all or nothing), idempotent re-applies, generations, and the typed MeshState."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from interlock.model import InvalidInput, NotFound, Resource, ResourceKey, Service
from interlock.model.policy import read_resources
from interlock.store import Change, Store
from interlock.store._engine import Database, normalize_url
from interlock.store._migrate import MIGRATIONS
from tests.model.specs import INVALID, valid

KINDS = ["VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "PeerAuthentication",
         "RequestAuthentication", "AuthorizationPolicy", "RateLimit", "Telemetry"]  # fmt: skip


def resources(*kinds: str) -> list[Resource]:
    return read_resources([valid(k) for k in kinds], batch=True)


def test_every_kind_round_trips(store: Store) -> None:
    result = store.apply_resources(resources(*KINDS))

    assert result.revision == 1 and result.changed
    assert [i.outcome for i in result.items] == ["created"] * len(KINDS)
    stored = store.list_resources()
    assert sorted(r.kind for r in stored) == sorted(KINDS)
    for resource in resources(*KINDS):
        got = store.get_resource(resource.key)
        assert got.same_content(resource)
        assert (got.generation, got.created_revision, got.revision) == (1, 1, 1)
    assert store.get_revision(1).changes == tuple(
        Change(k, f"default/{valid(k)['metadata']['name']}", "upsert")
        for k in KINDS  # type: ignore[arg-type]
    )


def test_an_identical_apply_changes_nothing(store: Store) -> None:
    first = store.apply_resources(resources("VirtualService", "DestinationRule"))
    again = store.apply_resources(resources("VirtualService", "DestinationRule"))

    assert again.revision == first.revision == store.revision() == 1
    assert not again.changed
    assert [i.outcome for i in again.items] == ["unchanged", "unchanged"]


def test_a_changed_spec_bumps_the_generation_and_keeps_the_creation(store: Store) -> None:
    store.put_service(Service("b", port=8080))  # revision 1
    store.apply_resources(resources("DestinationRule"))  # revision 2
    changed = valid("DestinationRule")
    changed["spec"]["subsets"].pop()
    result = store.apply_resources(read_resources([changed], batch=False))

    [item] = result.items
    assert item.outcome == "configured" and result.revision == 3
    stored = store.get_resource(item.resource.key)
    assert (stored.generation, stored.created_revision, stored.revision) == (2, 2, 3)
    assert [s["name"] for s in stored.spec["subsets"]] == ["v1", "v2"]


def test_one_revision_for_a_batch_and_unchanged_items_keep_theirs(store: Store) -> None:
    store.apply_resources(resources("VirtualService"))
    result = store.apply_resources(resources("VirtualService", "Gateway", "RateLimit"))

    assert result.revision == 2
    assert [i.outcome for i in result.items] == ["unchanged", "created", "created"]
    assert [i.resource.revision for i in result.items] == [1, 2, 2]
    assert [c.kind for c in store.get_revision(2).changes] == ["Gateway", "RateLimit"]


def test_an_invalid_resource_rejects_the_whole_batch(store: Store) -> None:
    store.apply_resources(resources("Gateway"))
    good = resources("VirtualService")[0]
    bad = dataclasses.replace(good, name="bad", spec={"hosts": ["reviews"]})

    with pytest.raises(InvalidInput) as caught:
        store.apply_resources([good, bad])

    assert "http or tcp" in caught.value.message
    assert store.revision() == 1
    assert [r.kind for r in store.list_resources()] == ["Gateway"]


def test_the_store_applies_the_models_rules_to_programmatic_writes(store: Store) -> None:
    base = resources("VirtualService")[0]
    for broken in (
        dataclasses.replace(base, api_version="networking.istio.io/v2"),
        dataclasses.replace(base, kind="Sidecar"),
        dataclasses.replace(base, namespace="Not Valid"),
        dataclasses.replace(base, spec=INVALID["route weights below 100"].document["spec"]),
    ):
        with pytest.raises(InvalidInput):
            store.apply_resources([broken])
    with pytest.raises(InvalidInput, match="appears twice"):
        store.apply_resources([base, base])
    assert store.revision() == 0 and store.list_resources() == []


def test_a_dry_run_writes_nothing(store: Store) -> None:
    store.apply_resources(resources("VirtualService"))
    changed = valid("VirtualService")
    changed["spec"]["http"].pop()
    plan = store.apply_resources(
        read_resources([changed, valid("DestinationRule")], batch=True), dry_run=True
    )

    assert plan.dry_run and plan.revision == 1
    assert [(i.outcome, i.resource.generation) for i in plan.items] == [
        ("configured", 2),
        ("created", 1),
    ]
    assert store.revision() == 1
    assert [r.kind for r in store.list_resources()] == ["VirtualService"]
    assert store.get_resource(plan.items[0].resource.key).generation == 1


def test_list_filters_get_and_delete(store: Store) -> None:
    other = valid("VirtualService")
    other["metadata"]["namespace"] = "shop"
    store.apply_resources(
        read_resources([valid("VirtualService"), other, valid("DestinationRule")], batch=True)
    )

    assert [(r.kind, r.namespace) for r in store.list_resources()] == [
        ("DestinationRule", "default"),
        ("VirtualService", "default"),
        ("VirtualService", "shop"),
    ]
    assert [r.namespace for r in store.list_resources(kind="VirtualService")] == ["default", "shop"]
    assert [r.kind for r in store.list_resources(namespace="default")] == [
        "DestinationRule",
        "VirtualService",
    ]
    assert [r.namespace for r in store.list_resources("VirtualService", "shop")] == ["shop"]

    key = ResourceKey("VirtualService", "shop", "reviews")
    assert store.delete_resource(key) == 2
    assert store.get_revision(2).changes == (Change("VirtualService", "shop/reviews", "delete"),)
    with pytest.raises(NotFound) as caught:
        store.get_resource(key)
    assert caught.value.errors[0].field == "name"
    with pytest.raises(NotFound):
        store.delete_resource(key)
    assert store.revision() == 2


def test_load_state_carries_typed_policies(store: Store) -> None:
    store.put_service(Service("reviews", port=9080))
    store.apply_resources(resources("VirtualService", "DestinationRule", "Telemetry"))

    state = store.load_state()

    assert state.revision == 2
    [vs] = state.policies.virtual_services
    assert vs.spec.hosts == ("reviews",) and vs.resource.generation == 1
    assert state.policies.destination_rules[0].spec.subset("v2") is not None
    assert state.policies.telemetries[0].spec.tracing is not None


def test_concurrent_applies_get_gapless_revisions_that_carry_them(store: Store) -> None:
    errors: list[BaseException] = []
    revisions: dict[str, int] = {}

    def write(name: str) -> None:
        document = valid("Gateway")
        document["metadata"]["name"] = name
        try:
            result = store.apply_resources(read_resources([document], batch=False))
            revisions[f"default/{name}"] = result.revision
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(f"gw-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert 1 <= store.revision() <= 4
    carried = {
        c.name: rev
        for rev in range(1, store.revision() + 1)
        for c in store.get_revision(rev).changes
    }
    assert carried == revisions
    for resource in store.list_resources("Gateway"):  # the stored revision is the carrier
        key = f"{resource.namespace}/{resource.name}"
        assert resource.revision == resource.created_revision == revisions[key]


def test_a_database_from_before_policies_is_upgraded(db_url: str) -> None:
    db = Database(normalize_url(db_url))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    try:
        with db.write() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0001")
            conn.execute(sa.text("UPDATE mesh SET revision = 5 WHERE id = 1"))
            conn.execute(
                sa.text(
                    "INSERT INTO services (name, namespace, protocol, port) "
                    "VALUES ('reviews', 'default', 'http', 9080)"
                )
            )
    finally:
        db.dispose()

    with Store.open(db_url) as store:
        assert store.revision() == 5
        assert [s.name for s in store.list_services()] == ["reviews"]
        result = store.apply_resources(resources("VirtualService"))
        assert result.revision == 6
        assert store.load_state().policies.virtual_services[0].name == "reviews"
