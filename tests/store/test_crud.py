"""Services and instances: create, read, replace, delete — on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from interlock.model import (
    Conflict,
    Forbidden,
    Instance,
    InvalidInput,
    NotFound,
    Service,
    ServiceProtocol,
)
from interlock.store import Store


def b_1(**changes: object) -> Instance:
    fields: dict[str, object] = {
        "service": "b",
        "instance_id": "b-1",
        "address": "127.0.0.1",
        "port": 15006,
        "labels": {"version": "v1"},
        "locality": "eu/west-1",
    }
    fields.update(changes)
    return Instance(**fields)  # type: ignore[arg-type]


def test_a_new_store_is_empty_at_revision_zero(store: Store) -> None:
    assert store.revision() == 0
    assert store.list_services() == []
    state = store.load_state()
    assert state.revision == 0
    assert dict(state.services) == {}


def test_put_service_creates_then_reads_back(store: Store) -> None:
    svc = Service("b", namespace="shop", protocol=ServiceProtocol.GRPC, port=9090)

    result = store.put_service(svc)

    assert (result.value, result.revision, result.created, result.changed) == (svc, 1, True, True)
    assert store.get_service("b") == svc
    assert store.list_services() == [svc]
    assert store.revision() == 1


def test_identical_put_is_one_row_and_one_revision(store: Store) -> None:
    store.put_service(Service("b", port=8080))

    again = store.put_service(Service("b", port=8080))

    assert (again.revision, again.created, again.changed) == (1, False, False)
    assert store.list_services() == [Service("b", port=8080)]
    assert store.revision() == 1
    with pytest.raises(NotFound):
        store.get_revision(2)


def test_put_service_with_a_new_body_replaces_it_in_a_new_revision(store: Store) -> None:
    store.put_service(Service("b", port=8080))

    result = store.put_service(Service("b", protocol=ServiceProtocol.HTTP2, port=8081))

    assert (result.revision, result.created, result.changed) == (2, False, True)
    assert store.get_service("b") == Service("b", protocol=ServiceProtocol.HTTP2, port=8081)


def test_services_are_listed_by_name(store: Store) -> None:
    for name in ["zeta", "a-c", "ab", "b0", "a"]:
        store.put_service(Service(name, port=80))

    assert [s.name for s in store.list_services()] == ["a", "a-c", "ab", "b0", "zeta"]


def test_missing_service_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="'nope'"):
        store.get_service("nope")
    with pytest.raises(NotFound):
        store.delete_service("nope")
    with pytest.raises(NotFound):
        store.list_instances("nope")
    assert store.revision() == 0


def test_instance_round_trip_keeps_every_field(store: Store) -> None:
    store.put_service(Service("b", port=8080))
    inst = b_1(labels={"version": "v1", "app.kubernetes.io/name": "b"}, healthy=False)

    result = store.put_instance(inst)

    assert (result.revision, result.created, result.changed) == (2, True, True)
    got = store.get_instance("b", "b-1")
    assert got.same_as(inst)
    assert dict(got.labels) == {"app.kubernetes.io/name": "b", "version": "v1"}
    assert got.locality == "eu/west-1"
    assert got.healthy is False


def test_identical_instance_put_makes_no_revision(store: Store) -> None:
    store.put_service(Service("b", port=8080))
    store.put_instance(b_1())

    again = store.put_instance(b_1(labels={"version": "v1"}))

    assert (again.revision, again.created, again.changed) == (2, False, False)
    assert len(store.list_instances("b")) == 1


def test_changed_instance_gets_a_new_revision(store: Store) -> None:
    store.put_service(Service("b", port=8080))
    store.put_instance(b_1())

    result = store.put_instance(b_1(labels={"version": "v2"}))

    assert (result.revision, result.created, result.changed) == (3, False, True)
    assert dict(store.get_instance("b", "b-1").labels) == {"version": "v2"}


def test_instances_are_listed_by_id_per_service(store: Store) -> None:
    store.put_service(Service("b", port=8080))
    store.put_service(Service("c", port=8080))
    for iid in ["b-3", "b-1", "b-2"]:
        store.put_instance(b_1(instance_id=iid))
    store.put_instance(b_1(service="c", instance_id="c-1"))

    assert [i.instance_id for i in store.list_instances("b")] == ["b-1", "b-2", "b-3"]
    assert [i.instance_id for i in store.list_instances("c")] == ["c-1"]


def test_instance_of_a_missing_service_is_refused_and_changes_nothing(store: Store) -> None:
    with pytest.raises(NotFound, match="service 'b'"):
        store.put_instance(b_1())

    assert store.revision() == 0
    assert store.load_state().instances_of("b") == ()


def test_missing_instance_is_not_found(store: Store) -> None:
    store.put_service(Service("b", port=8080))

    with pytest.raises(NotFound, match="instance 'b-9'"):
        store.get_instance("b", "b-9")
    with pytest.raises(NotFound, match="instance 'b-9'"):
        store.delete_instance("b", "b-9")
    with pytest.raises(NotFound, match="service 'x'"):
        store.get_instance("x", "b-9")
    assert store.revision() == 1


def test_delete_instance(store: Store) -> None:
    store.put_service(Service("b", port=8080))
    store.put_instance(b_1())

    revision = store.delete_instance("b", "b-1")

    assert revision == 3
    assert store.list_instances("b") == []


def test_deleting_a_service_with_instances_is_a_conflict_that_changes_nothing(
    store: Store,
) -> None:
    store.put_service(Service("b", port=8080))
    store.put_instance(b_1())

    with pytest.raises(Conflict, match="1 instance"):
        store.delete_service("b")

    assert store.revision() == 2
    assert store.get_service("b") == Service("b", port=8080)
    assert len(store.list_instances("b")) == 1


def test_cascade_deletes_the_service_and_its_instances_in_one_revision(store: Store) -> None:
    store.put_service(Service("b", port=8080))
    store.put_service(Service("c", port=8080))
    store.put_instance(b_1(instance_id="b-1"))
    store.put_instance(b_1(instance_id="b-2"))
    store.put_instance(b_1(service="c", instance_id="c-1"))

    revision = store.delete_service("b", cascade=True)

    assert revision == 6
    assert [s.name for s in store.list_services()] == ["c"]
    state = store.load_state()
    assert state.instances_of("b") == ()
    assert [i.instance_id for i in state.instances_of("c")] == ["c-1"]


def test_writes_confined_to_a_namespace_touch_no_service_of_another(store: Store) -> None:
    store.clock = lambda: 0.0  # registrations are healthy since then: instances compare whole
    store.put_service(Service("b", namespace="payments", port=8080))
    store.put_instance(b_1())
    revision = store.revision()
    writes = [
        lambda: store.put_service(Service("b", port=8080), in_namespace="default"),
        lambda: store.put_service(Service("b", namespace="payments", port=81), in_namespace="x"),
        lambda: store.put_instance(b_1(port=1), in_namespace="default"),
        lambda: store.delete_instance("b", "b-1", in_namespace="default"),
    ]
    for write in writes:
        with pytest.raises(Forbidden, match="service 'b' is in namespace 'payments'") as caught:
            write()
        assert [e.field for e in caught.value.errors] == ["namespace"]
    assert store.revision() == revision
    assert store.get_service("b").namespace == "payments"
    assert store.get_instance("b", "b-1") == b_1()
    assert store.put_instance(b_1(port=1), in_namespace="payments").changed
    assert store.delete_instance("b", "b-1", in_namespace="payments") == revision + 2


def test_delete_service_without_instances(store: Store) -> None:
    store.put_service(Service("b", port=8080))

    assert store.delete_service("b") == 2
    with pytest.raises(NotFound):
        store.get_service("b")


@pytest.mark.parametrize(
    ("service", "field"),
    [
        (Service("Bad_Name", port=80), "name"),
        (Service("b", namespace="", port=80), "namespace"),
        (Service("b", port=0), "port"),
        (Service("b", port=70000), "port"),
    ],
)
def test_invalid_services_are_refused(store: Store, service: Service, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        store.put_service(service)

    assert [e.field for e in caught.value.errors] == [field]
    assert store.revision() == 0


@pytest.mark.parametrize(
    ("instance", "field"),
    [
        (b_1(instance_id="-x"), "instance_id"),
        (b_1(address="not-an-ip"), "address"),
        (b_1(port=0), "port"),
        (b_1(labels={"version": "bad value!"}), "labels.version"),
        (b_1(labels={"bad key!": "v"}), "labels.bad key!"),
        (b_1(locality="a/b/c/d"), "locality"),
    ],
)
def test_invalid_instances_are_refused(store: Store, instance: Instance, field: str) -> None:
    store.put_service(Service("b", port=8080))

    with pytest.raises(InvalidInput) as caught:
        store.put_instance(instance)

    assert [e.field for e in caught.value.errors] == [field]
    assert store.revision() == 1
