"""The key sets of RequestAuthentications' ``jwksUri``, fetched by the control plane.

Where the keys are fetched is a decision (docs/policies.md): here, as istiod does by default,
not by each Envoy (``remote_jwks`` with a cluster to the issuer). So the issuer is reached
from one place, over TLS verified against the system's trust store and ``--jwks-ca-file``;
no proxy needs a route, DNS or egress to it; every proxy verifies with the same keys at the
same moment; and a key set is checked before any proxy sees it. The keys are inlined into the
providers (``local_jwks``, :mod:`interlock.xds.translate.jwt`).

:class:`KeyFetcher` holds one entry per URI the stored policies name (at most
:attr:`JwksSettings.max_uris`): the last good key set and why the last attempt failed. It
refreshes each every :attr:`JwksSettings.refresh` seconds (sooner when the issuer's
``Cache-Control: max-age`` says so, never sooner than :data:`MIN_REFRESH_S`), retries a
failure with backoff, and keeps the last good keys through failures. Whenever what it holds
changes — new keys, a first failure, a recovery — it calls ``on_change`` (the reconciler
rebuilds, and the cache pushes only to views whose configuration changed). Keys rotated by the
issuer are so picked up within one refresh interval without re-applying the policy.

Bounds: one response is at most :attr:`JwksSettings.max_bytes`, one attempt takes at most
:attr:`JwksSettings.timeout` seconds, redirects are not followed, plain ``http`` only to a
loopback host (the model refuses others), and only key sets Envoy can use are accepted
(:func:`~interlock.model.policy.request_authentication.jwks_error`: public keys, by Envoy's
rules). Key sets are public; nothing secret is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import httpx

from interlock.model import MeshState
from interlock.model.policy.request_authentication import FetchedKeys, jwks_error

log = logging.getLogger("interlock.jwks")

#: The issuer's ``max-age`` never makes refreshes more frequent than this (seconds), unless
#: the configured interval is shorter still.
MIN_REFRESH_S = 10.0
#: The first retry after a failure (seconds); it doubles up to the refresh interval.
FIRST_RETRY_S = 1.0

_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class JwksSettings:
    """``--jwks-refresh``, ``--jwks-ca-file`` and the fixed bounds of a fetch."""

    refresh: float = 300.0
    ca_file: Path | None = None
    timeout: float = 5.0
    max_bytes: int = 256 * 1024
    max_uris: int = 100

    def ssl_context(self) -> ssl.SSLContext:
        """The system trust store, plus ``ca_file`` when given (a private issuer's CA); a
        ValueError naming the flag when that file cannot be used."""
        context = ssl.create_default_context()
        if self.ca_file is not None:
            try:
                context.load_verify_locations(cafile=str(self.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load {self.ca_file} (--jwks-ca-file): {exc}") from None
        return context


@dataclass
class _Entry:
    held: FetchedKeys = field(default_factory=FetchedKeys)
    #: When the next attempt is due (monotonic seconds; 0: at once).
    due: float = 0.0
    failures: int = 0


class FetchError(Exception):
    """Why one attempt failed, in words for a problem report."""


class KeyFetcher:
    """Fetches and refreshes the key sets the stored policies name; see the module docstring."""

    def __init__(self, settings: JwksSettings, on_change: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.on_change = on_change
        self._ssl = settings.ssl_context()
        self._entries: dict[str, _Entry] = {}
        self._refused: frozenset[str] = frozenset()
        self._current: Mapping[str, FetchedKeys] = MappingProxyType({})
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Attempts made (successful or not), for tests and metrics.
        self.attempts = 0

    # -- what the reconciler asks --------------------------------------------------------
    def keys_for(self, state: MeshState) -> Mapping[str, FetchedKeys]:
        """What is held of the URIs ``state``'s policies name, by URI: the same object while
        nothing changed. New URIs are fetched at once; URIs no longer named are forgotten."""
        wanted = sorted(
            {
                rule.jwks_uri
                for policy in state.policies.request_authentications
                for rule in policy.spec.jwt_rules
                if rule.jwks_uri is not None
            }
        )
        limit = self.settings.max_uris
        kept, refused = wanted[:limit], frozenset(wanted[limit:])
        changed = refused != self._refused or set(kept) != set(self._entries)
        if not changed:
            return self._current
        for uri in set(self._entries) - set(kept):
            del self._entries[uri]
        for uri in kept:
            if uri not in self._entries:
                self._entries[uri] = _Entry()
                self._wake.set()
        self._refused = refused
        if refused:
            log.warning("%d jwksUri beyond the first %d are not fetched", len(refused), len(kept))
        self._publish()
        return self._current

    async def prime(self, state: MeshState) -> None:
        """One attempt for every URI ``state`` names, before the first proxy is served (each
        bounded by the timeout), so that a restart does not refuse tokens while it fetches."""
        self.keys_for(state)
        due = [uri for uri, entry in self._entries.items() if entry.held.keys is None]
        if due:
            await self._attempt(due)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="interlock-jwks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            due = [uri for uri, entry in self._entries.items() if entry.due <= now]
            if due:
                try:
                    await self._attempt(due)
                except Exception:  # a bug: never end the loop on it
                    log.exception("refreshing key sets failed")
                    await asyncio.sleep(FIRST_RETRY_S)
                continue
            later = min((e.due for e in self._entries.values()), default=now + 60.0)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, later - now)):
                    await self._wake.wait()

    # -- fetching ------------------------------------------------------------------------
    async def _attempt(self, uris: list[str]) -> None:
        """Fetch ``uris`` concurrently, record each result, and say once if anything moved."""
        async with httpx.AsyncClient(
            verify=self._ssl,
            timeout=self.settings.timeout,
            follow_redirects=False,
            trust_env=False,
        ) as client:
            results = await asyncio.gather(*(self._fetch(client, uri) for uri in uris))
        moved = False
        for uri, result in zip(uris, results, strict=True):
            entry = self._entries.get(uri)
            if entry is not None:
                moved |= self._record(uri, entry, result)
        if moved:
            self._publish()
            if self.on_change is not None:
                self.on_change()

    def _record(self, uri: str, entry: _Entry, result: tuple[str, float | None] | str) -> bool:
        """Note one attempt's ``result`` ((keys, max-age) or an error); True when what is held
        of ``uri`` changed."""
        self.attempts += 1
        now = time.monotonic()
        before = entry.held
        if isinstance(result, tuple):
            keys, max_age = result
            entry.failures = 0
            interval = self.settings.refresh
            if max_age is not None:
                interval = min(interval, max(max_age, MIN_REFRESH_S))
            entry.due = now + interval
            entry.held = FetchedKeys(keys=keys)
            if before.keys != keys:
                log.info("keys of %s %s", uri, "fetched" if before.keys is None else "changed")
        else:
            entry.failures += 1
            retry = FIRST_RETRY_S * 2 ** min(entry.failures - 1, 16)
            entry.due = now + min(self.settings.refresh, retry)
            entry.held = FetchedKeys(keys=before.keys, error=result)
            if before.error != result:
                log.warning(
                    "fetching keys from %s failed: %s (%s)",
                    uri,
                    result,
                    "keeping the last good keys" if before.keys else "its tokens are refused",
                )
        return entry.held != before

    async def _fetch(self, client: httpx.AsyncClient, uri: str) -> tuple[str, float | None] | str:
        """The key set at ``uri`` (compact JSON) and its ``max-age``, or why not."""
        try:
            async with asyncio.timeout(self.settings.timeout):
                return await self._get(client, uri)
        except FetchError as exc:
            return str(exc)
        except TimeoutError:
            return f"no answer within {self.settings.timeout:g} s"
        except httpx.HTTPError as exc:
            return _describe(exc)

    async def _get(self, client: httpx.AsyncClient, uri: str) -> tuple[str, float | None]:
        limit = self.settings.max_bytes
        async with client.stream("GET", uri, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                where = response.headers.get("location")
                raise FetchError(
                    f"HTTP {response.status_code}"
                    + (f" (redirected to {where}: give that URI)" if where else "")
                )
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise FetchError(f"the key set is larger than {limit} bytes")
            max_age = _max_age(response.headers.get("cache-control", ""))
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise FetchError("the key set is not UTF-8 text") from None
        error = jwks_error(text)
        if error is not None:
            # "is not valid JSON: ...", "must be ...", or "keys[0] ... cannot verify tokens"
            joined = " " if error.startswith(("is ", "must ")) else "'s "
            raise FetchError(f"the answer{joined}{error}")
        compact = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
        return compact, max_age

    def _publish(self) -> None:
        held = {uri: entry.held for uri, entry in sorted(self._entries.items())}
        for uri in sorted(self._refused):
            held[uri] = FetchedKeys(
                error=f"more than {self.settings.max_uris} distinct jwksUri in the mesh; "
                "this one is not fetched"
            )
        self._current = MappingProxyType(held)


def _max_age(cache_control: str) -> float | None:
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else None


def _describe(exc: httpx.HTTPError) -> str:
    """A transport error in a few words (TLS verification failures say so)."""
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            "the issuer's certificate is not trusted (system trust store and --jwks-ca-file): "
            + text
        )
    return f"{type(exc).__name__}: {text}"
