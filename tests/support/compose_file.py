"""A compose file read into plain data: which services, their commands, environments, volumes,
start order and restart policies. No process is started here (see ``tests/support/compose.py``).

What is honoured and what is not is decided here, once, so a compose file that needs more than
the harness can emulate fails loudly instead of running differently from Docker:

- Honoured: ``command`` (and ``entrypoint``, prepended), ``environment`` (map or list, a bare
  ``NAME`` takes the test's own value), ``env_file``, ``depends_on`` (list, or map with
  ``condition: service_started | service_completed_successfully | service_healthy``),
  ``restart`` (``no``, ``on-failure[:N]``, ``always``, ``unless-stopped``), ``network_mode``
  (``service:X`` and ``none``), ``networks`` (aliases), ``volumes`` (named volumes, bind mounts
  of host paths, anonymous volumes and ``tmpfs`` as directories of the service; short and long
  syntax; ``:ro``), ``ports`` (read, not published), ``working_dir`` (inside a volume),
  ``healthcheck.test``, ``stop_signal``, ``stop_grace_period``, ``${VAR}`` /
  ``${VAR:-default}`` / ``$$`` interpolation, ``x-*`` extension fields and YAML anchors/merge
  keys. The volume paths in a command are rewritten (see ``rewrite_paths``); the command is
  otherwise run as written.
- Ignored: ``build``, ``image`` (commands run from the project's virtualenv instead),
  ``container_name``, ``labels``, ``logging``, ``expose``, ``hostname``, ``domainname``,
  ``user`` (everything runs as root, as this repository's images do), ``init``, ``tty``,
  ``stdin_open``, ``platform``, ``pull_policy``, ``deploy`` and resource limits; top-level
  ``networks`` (every service is on one bridge), ``name`` and ``version``.
- Refused (ComposeError): any other key, ``network_mode: host`` or ``container:...``, a service
  without ``command`` (an image's own CMD is never run), port ranges.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_COMPOSE_FILE = REPO / "docker-compose.yml"

CONDITIONS = ("service_started", "service_completed_successfully", "service_healthy")
RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")
HONOURED_KEYS = frozenset(
    {
        "command",
        "entrypoint",
        "environment",
        "env_file",
        "depends_on",
        "restart",
        "network_mode",
        "networks",
        "volumes",
        "tmpfs",
        "ports",
        "working_dir",
        "healthcheck",
        "stop_signal",
        "stop_grace_period",
    }
)
IGNORED_KEYS = frozenset(
    {
        "build",
        "image",
        "container_name",
        "labels",
        "logging",
        "expose",
        "hostname",
        "domainname",
        "user",
        "init",
        "tty",
        "stdin_open",
        "platform",
        "pull_policy",
        "deploy",
        "cap_add",
        "cap_drop",
        "security_opt",
        "ulimits",
        "shm_size",
        "mem_limit",
        "cpus",
    }
)
IGNORED_TOP_LEVEL = frozenset({"networks", "name", "version"})


class ComposeError(ValueError):
    """The compose file asks for something this harness does not emulate, or is malformed."""


@dataclass(frozen=True)
class Mount:
    """One ``volumes:`` entry of a service. ``kind`` is ``volume`` (``source`` names a
    top-level volume), ``bind`` (``source`` is an absolute host path) or ``anonymous``
    (a per-service directory, as are ``tmpfs`` mounts)."""

    kind: str
    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class Service:
    """One service as the harness runs it."""

    name: str
    command: tuple[str, ...]
    environment: Mapping[str, str]
    depends_on: Mapping[str, str]
    """dependency name -> condition (one of CONDITIONS)"""
    restart: str = "no"
    max_restarts: int | None = None
    """``on-failure:N``'s N; None: the harness's own bound."""
    network_mode: str | None = None
    """None: its own network namespace; ``service:X``: X's; ``none``: loopback only."""
    aliases: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    ports: tuple[tuple[int | None, int], ...] = ()
    """(published port or None, container port); not published by the harness."""
    working_dir: str | None = None
    healthcheck: tuple[str, ...] | None = None
    """The command whose exit 0 means healthy (``CMD-SHELL`` becomes ``/bin/sh -c``)."""
    stop_signal: int = signal.SIGTERM
    stop_grace: float = 10.0

    @property
    def network_owner(self) -> str | None:
        """The service whose namespace this one lives in (itself unless ``service:X``);
        None for ``network_mode: none`` (an isolated namespace of its own)."""
        if self.network_mode is None:
            return self.name
        if self.network_mode.startswith("service:"):
            return self.network_mode.removeprefix("service:")
        return None

    def container_port(self, published: int) -> int:
        """The container port published as ``published`` (``ports: ["P:C"]``)."""
        for host_port, container in self.ports:
            if host_port == published:
                return container
        raise KeyError(f"{self.name} publishes no port {published}")


@dataclass(frozen=True)
class ComposeProject:
    """A compose file's services (in file order) and named volumes."""

    path: Path
    services: Mapping[str, Service]
    volumes: tuple[str, ...]

    @classmethod
    def load(
        cls, path: Path = DEFAULT_COMPOSE_FILE, environ: Mapping[str, str] | None = None
    ) -> ComposeProject:
        """Parse ``path``; ``environ`` (default: this process's) feeds ``${VAR}``
        interpolation and bare environment names. Raises ComposeError."""
        environ = os.environ if environ is None else environ
        raw = yaml.safe_load(path.read_text())
        if not isinstance(raw, dict) or not isinstance(raw.get("services"), dict):
            raise ComposeError(f"{path}: no services")
        data = interpolate(raw, environ)
        for key in data:
            known = key in ("services", "volumes") or key in IGNORED_TOP_LEVEL
            if not known and not str(key).startswith("x-"):
                raise ComposeError(f"{path}: top-level key {key!r} is not supported")
        volumes = tuple((data.get("volumes") or {}).keys())
        services = {
            name: _service(str(name), spec or {}, path.parent, volumes, environ)
            for name, spec in data["services"].items()
        }
        project = cls(path, services, volumes)
        project.start_order()  # refuses unknown dependencies and cycles
        for svc in services.values():
            owner = svc.network_owner
            if owner is not None and owner not in services:
                raise ComposeError(f"{svc.name}: network_mode names a missing service {owner!r}")
            if owner is not None and services[owner].network_mode is not None:
                raise ComposeError(f"{svc.name}: {owner!r} has no network of its own to share")
        return project

    def start_order(self) -> list[str]:
        """Every service after the ones it depends on (and after the one whose network it
        joins), otherwise in file order."""
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str, via: str) -> None:
            if name in order:
                return
            if name not in self.services:
                raise ComposeError(f"{via} depends on a missing service {name!r}")
            if name in visiting:
                raise ComposeError(f"dependency cycle through {name!r}")
            visiting.add(name)
            svc = self.services[name]
            deps = list(svc.depends_on)
            if svc.network_mode and svc.network_mode.startswith("service:"):
                deps.append(svc.network_mode.removeprefix("service:"))
            for dep in deps:
                visit(dep, name)
            visiting.discard(name)
            order.append(name)

        for name in self.services:
            visit(name, name)
        return order

    def network_owners(self) -> list[str]:
        """The services that get a network namespace on the bridge, in file order."""
        return [n for n, s in self.services.items() if s.network_mode is None]


_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_]\w*))")


def interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    """``value`` with compose's ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?message}`` and ``$$`` (a literal ``$``) substituted in every string."""
    if isinstance(value, dict):
        return {k: interpolate(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3) or ""
        current = environ.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op and op.endswith("?") and unset:
            raise ComposeError(f"${{{name}}} is required: {arg or 'not set'}")
        if op and op.endswith("-") and unset:
            return arg
        return current or ""

    return _VAR.sub(one, value)


def _argv(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(shlex.split(value))
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    raise ComposeError(f"{what} must be a string or a list")


def _environment(spec: dict[str, Any], base: Path, environ: Mapping[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    files = spec.get("env_file") or []
    for item in [files] if isinstance(files, str | dict) else files:
        name = item["path"] if isinstance(item, dict) else item
        for line in (base / name).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, val = line.partition("=")
                env[key.strip()] = val.strip().strip("'\"")
    raw = spec.get("environment") or {}
    pairs: list[tuple[str, Any]]
    if isinstance(raw, dict):
        pairs = list(raw.items())
    else:
        pairs = [(i.partition("=")[0], i.partition("=")[2] if "=" in i else None) for i in raw]
    for key, val in pairs:
        if val is None:
            if key in environ:
                env[key] = environ[key]
        elif isinstance(val, bool):
            env[key] = "true" if val else "false"
        else:
            env[key] = str(val)
    return env


def _depends_on(spec: dict[str, Any], name: str) -> dict[str, str]:
    raw = spec.get("depends_on") or {}
    if isinstance(raw, list):
        return {str(d): "service_started" for d in raw}
    out: dict[str, str] = {}
    for dep, opts in raw.items():
        condition = (opts or {}).get("condition", "service_started")
        if condition not in CONDITIONS:
            raise ComposeError(f"{name}: depends_on condition {condition!r} is not supported")
        out[str(dep)] = condition
    return out


def _restart(value: Any, name: str) -> tuple[str, int | None]:
    text = "no" if value in (None, False) else str(value)
    policy, _, count = text.partition(":")
    if policy not in RESTART_POLICIES or (count and policy != "on-failure"):
        raise ComposeError(f"{name}: restart {text!r} is not supported")
    return policy, int(count) if count else None


def _mounts(spec: dict[str, Any], name: str, base: Path, volumes: tuple[str, ...]) -> list[Mount]:
    mounts: list[Mount] = []
    for item in spec.get("volumes") or []:
        if isinstance(item, dict):
            kind = item.get("type", "volume")
            source = str(item.get("source", ""))
            target = str(item["target"])
            read_only = bool(item.get("read_only", False))
            if kind == "tmpfs" or (kind == "volume" and not source):
                kind = "anonymous"
        else:
            parts = str(item).split(":")
            if len(parts) == 1:
                kind, source, target, read_only = "anonymous", "", parts[0], False
            else:
                source, target = parts[0], parts[1]
                modes = parts[2].split(",") if len(parts) > 2 else []
                read_only = "ro" in modes
                kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
        if kind == "bind":
            source = str((base / Path(source).expanduser()).resolve())
        elif kind == "volume" and source not in volumes:
            raise ComposeError(f"{name}: volume {source!r} is not declared under volumes:")
        elif kind not in ("volume", "anonymous"):
            raise ComposeError(f"{name}: volume type {kind!r} is not supported")
        if not target.startswith("/"):
            raise ComposeError(f"{name}: volume target {target!r} is not an absolute path")
        mounts.append(Mount(kind, source, target.rstrip("/") or "/", read_only))
    for target in spec.get("tmpfs") or []:
        mounts.append(Mount("anonymous", "", str(target).split(":")[0]))
    return mounts


def _ports(spec: dict[str, Any], name: str) -> list[tuple[int | None, int]]:
    ports: list[tuple[int | None, int]] = []
    for item in spec.get("ports") or []:
        if isinstance(item, dict):
            published = item.get("published")
            ports.append((int(published) if published else None, int(item["target"])))
            continue
        text = str(item).split("/")[0]
        parts = text.split(":")
        if "-" in parts[-1]:
            raise ComposeError(f"{name}: port ranges ({item!r}) are not supported")
        ports.append((int(parts[-2]) if len(parts) > 1 else None, int(parts[-1])))
    return ports


def _aliases(spec: dict[str, Any]) -> list[str]:
    networks = spec.get("networks") or {}
    if isinstance(networks, list):
        return []
    return [str(a) for opts in networks.values() for a in ((opts or {}).get("aliases") or [])]


def _healthcheck(spec: dict[str, Any]) -> tuple[str, ...] | None:
    check = spec.get("healthcheck") or {}
    test = check.get("test")
    if not test or check.get("disable"):
        return None
    if isinstance(test, str):
        return ("/bin/sh", "-c", test)
    if test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        return ("/bin/sh", "-c", " ".join(test[1:]))
    return tuple(str(t) for t in (test[1:] if test[0] == "CMD" else test))


def rewrite_paths(value: str, mounts: Mapping[str, Path]) -> str:
    """``value`` with each mount target (a key of ``mounts``) replaced by its directory where
    the target is a whole path prefix (followed by ``/`` or the end) and begins ``value``,
    follows ``=`` (``--db=/data/x``) or follows ``:///`` (``sqlite:////data/x``). The longest
    target wins; nothing else is rewritten."""
    if not mounts:
        return value
    targets = "|".join(re.escape(t) for t in sorted(mounts, key=len, reverse=True))
    pattern = re.compile(rf"(?:^|(?<==)|(?<=:///))({targets})(?=/|$)")
    return pattern.sub(lambda m: str(mounts[m.group(1)]), value)


def parse_duration(value: Any) -> float:
    """A compose duration (``10s``, ``1m30s``, ``500ms``, or a number of seconds)."""
    if isinstance(value, int | float):
        return float(value)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(value))
    if not parts or "".join(n + u for n, u in parts) != str(value):
        raise ComposeError(f"bad duration {value!r}")
    return sum(float(n) * units[u] for n, u in parts)


def _service(
    name: str,
    spec: dict[str, Any],
    base: Path,
    volumes: tuple[str, ...],
    environ: Mapping[str, str],
) -> Service:
    for key in spec:
        if key not in HONOURED_KEYS and key not in IGNORED_KEYS and not key.startswith("x-"):
            raise ComposeError(f"{name}: key {key!r} is not supported by the test harness")
    command = _argv(spec.get("entrypoint"), f"{name}: entrypoint") + _argv(
        spec.get("command"), f"{name}: command"
    )
    if not command:
        raise ComposeError(f"{name}: no command (images are not run, so their CMD is unknown)")
    network_mode = spec.get("network_mode")
    if network_mode not in (None, "none") and not str(network_mode).startswith("service:"):
        raise ComposeError(f"{name}: network_mode {network_mode!r} is not supported")
    restart, max_restarts = _restart(spec.get("restart"), name)
    stop_signal = spec.get("stop_signal", "SIGTERM")
    try:
        signum = signal.Signals[str(stop_signal)] if not str(stop_signal).isdigit() else None
    except KeyError:
        raise ComposeError(f"{name}: unknown stop_signal {stop_signal!r}") from None
    return Service(
        name=name,
        command=command,
        environment=_environment(spec, base, environ),
        depends_on=_depends_on(spec, name),
        restart=restart,
        max_restarts=max_restarts,
        network_mode=None if network_mode is None else str(network_mode),
        aliases=tuple(_aliases(spec)),
        mounts=tuple(_mounts(spec, name, base, volumes)),
        ports=tuple(_ports(spec, name)),
        working_dir=spec.get("working_dir"),
        healthcheck=_healthcheck(spec),
        stop_signal=int(signum) if signum is not None else int(stop_signal),
        stop_grace=parse_duration(spec.get("stop_grace_period", "10s")),
    )
