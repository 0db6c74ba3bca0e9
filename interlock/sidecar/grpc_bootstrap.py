"""The xDS bootstrap of a proxyless gRPC workload (gRFC A27), and its token file.

gRPC reads the bootstrap once per process, from the file named by ``GRPC_XDS_BOOTSTRAP`` (or
the JSON in ``GRPC_XDS_BOOTSTRAP_CONFIG``). Interlock's says:

- ``xds_servers``: the control plane, over TLS verified against the mesh CA bundle
  (``channel_creds`` type ``tls``, gRFC A65: ``ca_certificate_file``), with the workload's
  proxy token as call credentials (``call_creds`` type ``jwt_token_file``, gRFC A97: the
  token's JWT-shaped envelope, :mod:`interlock.model.token_envelope`), speaking xDS v3;
- ``node``: ``id`` the instance id, ``cluster`` the service, ``metadata`` its namespace and
  ``kind: grpc`` (what tells the control plane to serve gRPC's view), and its locality.

grpcio (1.85) reads ``call_creds`` only when ``GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS`` is
``true`` in the process's environment (:data:`CALL_CREDS_ENV`); without it, it connects
without a token and the control plane refuses the stream (UNAUTHENTICATED).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interlock.model.names import namespace_error, service_name_error
from interlock.model.node_metadata import ProxyKind

#: The environment variable grpcio needs to send the bootstrap's call credentials.
CALL_CREDS_ENV = "GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS"
#: Where ``interlock bootstrap --grpc`` writes the token envelope unless told otherwise.
DEFAULT_GRPC_TOKEN_FILE = "/etc/interlock/grpc-token.jwt"


@dataclass(frozen=True)
class GrpcBootstrapSpec:
    """One proxyless gRPC workload: who it is and how it reaches the control plane."""

    service: str
    instance_id: str
    xds_host: str
    xds_port: int
    ca_file: str
    token_file: str
    namespace: str = "default"
    locality: str = ""


def grpc_bootstrap(spec: GrpcBootstrapSpec) -> dict[str, Any]:
    """The bootstrap as JSON data; ValueError names a bad field."""
    if err := service_name_error(spec.service):
        raise ValueError(f"--service: {err}")
    if err := namespace_error(spec.namespace):
        raise ValueError(f"--namespace: {err}")
    if not spec.instance_id:
        raise ValueError("--instance-id is required")
    metadata: dict[str, str] = {"namespace": spec.namespace, "kind": ProxyKind.GRPC.value}
    node: dict[str, Any] = {"id": spec.instance_id, "cluster": spec.service, "metadata": metadata}
    if spec.locality:
        parts = spec.locality.split("/")
        if len(parts) > 3 or not all(parts):
            raise ValueError("--locality must be region[/zone[/subzone]]")
        metadata["locality"] = spec.locality
        node["locality"] = dict(zip(("region", "zone", "sub_zone"), parts, strict=False))
    host = f"[{spec.xds_host}]" if ":" in spec.xds_host else spec.xds_host
    return {
        "xds_servers": [
            {
                "server_uri": f"{host}:{spec.xds_port}",
                "channel_creds": [{"type": "tls", "config": {"ca_certificate_file": spec.ca_file}}],
                "call_creds": [
                    {"type": "jwt_token_file", "config": {"jwt_token_file": spec.token_file}}
                ],
                "server_features": ["xds_v3"],
            }
        ],
        "node": node,
    }


def render_grpc_bootstrap(spec: GrpcBootstrapSpec) -> str:
    """The bootstrap file's text (indented JSON, newline-terminated)."""
    return json.dumps(grpc_bootstrap(spec), indent=2) + "\n"


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 0600) by an atomic rename: gRPC re-reads the token
    file when its envelope nears expiry and must never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)
