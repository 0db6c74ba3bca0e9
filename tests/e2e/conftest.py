"""Fixtures for end-to-end tests: a real server, sidecars and apps, all cleaned up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from tests.support.mesh import ServerProcess, Sidecar, UpstreamApp


@pytest.fixture(params=["delta", "sotw"])
def xds_protocol(request: pytest.FixtureRequest) -> str:
    """Every end-to-end traffic test runs against both ADS variants."""
    return str(request.param)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path)
    srv.start()
    yield srv
    srv.stop()


class App(Protocol):
    """What a sidecar needs of its app: the port it listens on (127.0.0.1)."""

    @property
    def port(self) -> int: ...


class Mesh:
    """Makes apps and sidecars bound to one server; stops them all at teardown."""

    def __init__(self, server: ServerProcess, workdir: Path, xds_protocol: str) -> None:
        self.server = server
        self.workdir = workdir
        self.xds_protocol = xds_protocol
        self.apps: list[UpstreamApp] = []
        self.sidecars: list[Sidecar] = []

    def app(
        self, service: str, instance: str, status: int = 200, statuses: list[int] | None = None
    ) -> UpstreamApp:
        app = UpstreamApp(service, instance, status, statuses)
        self.apps.append(app)
        return app

    def sidecar(
        self,
        service: str,
        instance: str,
        app: App,
        *,
        labels: dict[str, str] | None = None,
        extra: list[str] | None = None,
        wait: bool = True,
    ) -> Sidecar:
        sc = Sidecar(
            service,
            instance,
            app.port,
            self.server,
            self.workdir,
            self.xds_protocol,
            labels or {},
            extra or [],
        )
        self.sidecars.append(sc)
        sc.start()
        if wait:
            sc.wait_listening()
        return sc

    def service(self, name: str, instance: str, **kw: object) -> tuple[UpstreamApp, Sidecar]:
        app = self.app(name, instance)
        return app, self.sidecar(name, instance, app, **kw)  # type: ignore[arg-type]

    def close(self) -> None:
        for sc in reversed(self.sidecars):
            sc.stop()
        for app in self.apps:
            app.close()


@pytest.fixture
def mesh(server: ServerProcess, tmp_path: Path, xds_protocol: str) -> Iterator[Mesh]:
    m = Mesh(server, tmp_path, xds_protocol)
    try:
        yield m
    finally:
        m.close()
