"""Bootstrap rendering and Envoy process supervision (used by the CLI)."""

from interlock.sidecar.bootstrap import (
    DEFAULT_TOKEN_FILE,
    SidecarSpec,
    XdsProtocol,
    render_sidecar_bootstrap,
)
from interlock.sidecar.envoy import EnvoyNotFound, EnvoyProcess, find_envoy
from interlock.sidecar.run import SidecarError, SidecarOptions, run_sidecar

__all__ = [
    "DEFAULT_TOKEN_FILE",
    "EnvoyNotFound",
    "EnvoyProcess",
    "SidecarError",
    "SidecarOptions",
    "SidecarSpec",
    "XdsProtocol",
    "find_envoy",
    "render_sidecar_bootstrap",
    "run_sidecar",
]
