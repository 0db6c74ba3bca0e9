"""How a proxy's Envoy trusts the control plane, and how that trust follows root rotations.

Envoy's ``interlock_xds`` cluster speaks TLS to the control plane and accepts it only if its
certificate chains to the mesh's CA bundle *and* carries the control plane's SPIFFE ID (a
sidecar's own SVID, from the same CA, cannot pass for the control plane). The SAN to match is
in the bootstrap; the bundle is a file, ``<dir>/ca.pem``, which Envoy reads through a
file-based SDS secret (``<dir>/xds-ca.yaml``) and reloads when the file is replaced, without a
restart (Envoy watches ``<dir>`` for files moved into it).

:class:`BundleFiles` writes both (``ca.pem`` always by an atomic rename); :class:`BundleFollower`
keeps ``ca.pem`` current by holding ``GET /v1/ca/bundle?wait=&known=`` open, so the new root of
a rotation reaches the file within a moment of the control plane loading it — one step before
the control plane's certificate can come from that root.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interlock.client import ClientError, InterlockClient

log = logging.getLogger("interlock.sidecar")

CA_SECRET = "interlock_ca"
"""The name of the file-based SDS secret holding the bundle Envoy verifies the server with."""
FOLLOW_WAIT = 30.0
"""Seconds one bundle request is held open by the server."""


@dataclass(frozen=True)
class XdsTls:
    """TLS to the control plane: the SPIFFE ID it must present, the directory of the bundle
    files, and the SNI to send (its host name; none for an IP address)."""

    identity: str
    ca_dir: str
    sni: str = ""

    @property
    def ca_file(self) -> str:
        return os.path.join(self.ca_dir, "ca.pem")

    @property
    def sds_file(self) -> str:
        return os.path.join(self.ca_dir, "xds-ca.yaml")


def sni_for(host: str) -> str:
    """The SNI for connecting to ``host``: the host name itself, nothing for an IP."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return ""


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def transport_socket(tls: XdsTls | None, indent: int) -> str:
    """The ``transport_socket`` of the ``interlock_xds`` cluster (YAML at ``indent`` spaces),
    or nothing for a plain-text control plane."""
    if tls is None:
        return ""
    sni = f'\n    sni: "{_quoted(tls.sni)}"' if tls.sni else ""
    block = f"""transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext{sni}
    common_tls_context:
      alpn_protocols: [h2]
      combined_validation_context:
        # Only the control plane's own identity: a proxy's SVID, from the same CA, fails.
        default_validation_context:
          match_typed_subject_alt_names:
          - san_type: URI
            matcher: {{exact: "{_quoted(tls.identity)}"}}
        # The mesh's CA bundle, reloaded whenever {tls.ca_file} is replaced.
        validation_context_sds_secret_config:
          name: {CA_SECRET}
          sds_config:
            resource_api_version: V3
            path_config_source: {{path: "{_quoted(tls.sds_file)}"}}
"""
    pad = " " * indent
    return "\n".join(pad + line if line else line for line in block.splitlines())


def sds_document(tls: XdsTls) -> str:
    """The file-based SDS response naming ``ca.pem`` (static: only ``ca.pem`` changes)."""
    return f"""# The bundle Envoy verifies the control plane with (written by Interlock; see
# interlock.sidecar.xds_trust). Envoy re-reads {tls.ca_file} when it is replaced.
resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: {CA_SECRET}
  validation_context:
    trusted_ca: {{filename: "{_quoted(tls.ca_file)}"}}
    watched_directory: {{path: "{_quoted(tls.ca_dir)}"}}
"""


class BundleFiles:
    """``ca.pem`` and ``xds-ca.yaml`` in one directory (made 0755 if missing)."""

    def __init__(self, tls: XdsTls) -> None:
        self.tls = tls
        self.version = ""

    def write(self, bundle: dict[str, Any]) -> bool:
        """Write the bundle of a ``GET /v1/ca/bundle`` answer (and the SDS file the first
        time); True when ``ca.pem`` changed."""
        directory = Path(self.tls.ca_dir)
        directory.mkdir(parents=True, exist_ok=True)
        sds = Path(self.tls.sds_file)
        if not sds.exists():
            _replace(sds, sds_document(self.tls).encode())
        version = str(bundle["version"])
        if version == self.version:
            return False
        _replace(Path(self.tls.ca_file), str(bundle["pem"]).encode("ascii"))
        self.version = version
        return True


def _replace(path: Path, data: bytes) -> None:
    """Replace ``path`` by renaming a complete file over it: a reader (Envoy's watch) sees
    the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o644)
    tmp.replace(path)


class BundleFollower:
    """A thread that keeps :class:`BundleFiles` current (see the module docstring).

    ``client`` is used by this thread only; ``on_change`` gets each new bundle's PEM (e.g. to
    let other clients trust its roots too)."""

    def __init__(
        self,
        client: InterlockClient,
        files: BundleFiles,
        on_change: Callable[[bytes], None] | None = None,
        *,
        hold: float = FOLLOW_WAIT,
    ) -> None:
        self.client = client
        self.files = files
        self.on_change = on_change
        self.hold = hold
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="interlock-bundle", daemon=True)

    def start(self) -> BundleFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop following (a held request is abandoned, not awaited)."""
        self._stop.set()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                bundle = self.client.ca_bundle(wait=self.hold, known=self.files.version)
            except ClientError as exc:
                failures += 1
                if failures == 1:
                    log.warning("cannot follow the CA bundle (%s); retrying", exc)
                self._stop.wait(min(5.0, 0.5 * failures))
                continue
            failures = 0
            if self._stop.is_set():
                return
            if self.files.write(bundle):
                pem = str(bundle["pem"]).encode("ascii")
                self.client.trust_more(pem)
                log.warning("the CA bundle changed (version %s)", self.files.version[:12])
                if self.on_change is not None:
                    self.on_change(pem)


__all__ = [
    "CA_SECRET",
    "BundleFiles",
    "BundleFollower",
    "XdsTls",
    "sds_document",
    "sni_for",
    "transport_socket",
]
