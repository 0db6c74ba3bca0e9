"""When test hosts cannot be made, the multi-host tests skip, and the reason says why."""

from __future__ import annotations

import pytest

from tests.support import hosts
from tests.support.hosts import HostError, namespaces_unavailable


def test_not_root_is_a_reason_to_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert "need root" in str(namespaces_unavailable())


def test_a_failing_ip_netns_add_is_a_reason_to_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: str, **kw: object) -> str:
        raise HostError("`ip netns add x` exited 1: mount --make-shared /run/netns failed")

    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr("shutil.which", lambda name: "/usr/sbin/ip")
    monkeypatch.setattr(hosts, "ip", refuse)
    reason = namespaces_unavailable()
    assert reason is not None and reason.startswith("cannot make a network namespace: ")
    assert "make-shared" in reason
