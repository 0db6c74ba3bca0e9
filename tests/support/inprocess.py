"""The control plane in the test process (a thread running its own event loop), for tests that
must reach inside it through app.Components — e.g. to publish a config Envoy will reject.
It quacks like tests.support.mesh.ServerProcess for Sidecar and Mesh."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from interlock.app import Components, ServerInfo, ServerSettings, serve
from interlock.model.addresses import HostPort
from tests.support.mesh import CLIENT_ENV, restore_env, xds_channel

T = TypeVar("T")


class InProcessServer:
    def __init__(
        self, workdir: Path, db_url: str | None = None, *, open_reads: bool = False
    ) -> None:
        self.settings = ServerSettings(
            db_url=db_url or f"sqlite:///{workdir / 'interlock.db'}",
            api=HostPort("127.0.0.1", 0),
            xds=HostPort("127.0.0.1", 0),
            debounce_quiet=0.02,
            debounce_max=0.2,
            log_level="warning",
            admin_token_file=workdir / "admin-token",
            open_reads=open_reads,
            ca_bundle_file=workdir / "interlock-ca.pem",
        )
        self.info: ServerInfo | None = None
        self.components: Components | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def ready(info: ServerInfo) -> None:
                self.info = info
                self._ready.set()

            def expose(components: Components) -> None:
                self.components = components

            await serve(self.settings, self._stop, ready, expose=expose)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def start(self, timeout: float = 20.0) -> InProcessServer:
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None or self.info is None:
            raise AssertionError(f"in-process server did not start: {self._error!r}")
        # Like ServerProcess: CLI commands a test runs carry the admin token and the bundle.
        self._previous_env = {k: os.environ.get(k) for k in CLIENT_ENV}
        os.environ["INTERLOCK_TOKEN"] = self.admin_token
        os.environ["INTERLOCK_CA_FILE"] = str(self.ca_file)
        return self

    def stop(self) -> None:
        if hasattr(self, "_previous_env"):
            restore_env(self._previous_env)
            del self._previous_env
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def on_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's event loop (where its components live); return its value."""
        assert self._loop is not None
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(call)
        return future.result(10)

    def run_coroutine(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    @property
    def api_url(self) -> str:
        assert self.info is not None
        return self.info.api_url

    @property
    def xds_address(self) -> str:
        assert self.info is not None
        return self.info.xds_address

    @property
    def admin_token_file(self) -> Path:
        path = self.settings.admin_token_file
        assert path is not None
        return path

    @property
    def admin_token(self) -> str:
        return self.admin_token_file.read_text().strip()

    @property
    def ca_file(self) -> Path:
        path = self.settings.ca_bundle_file
        assert path is not None
        return path

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def xds_channel(self, **options: Any) -> Any:
        """A grpc.aio channel to the xDS port, over TLS verified like a proxy's."""
        return xds_channel(self.xds_address, self.ca_file, **options)

    def api(self) -> httpx.Client:
        """A client of the REST API with the admin token."""
        return httpx.Client(
            base_url=self.api_url,
            # Long polls (`?wait=` up to 10 s) answer by themselves; reads wait longer.
            timeout=httpx.Timeout(5.0, read=15.0),
            headers={"Authorization": f"Bearer {self.admin_token}"},
            verify=self.tls(),
        )
