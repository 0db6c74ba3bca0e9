"""`interlock apply -f`, and `get`/`delete` of policy resources: clients of /v1/resources,
with kubectl's vocabulary (``virtualservice.networking.istio.io/reviews created``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

import typer

from interlock.cli.manifests import Manifest, ManifestError, load_manifests, with_namespace
from interlock.cli.options import (
    DEFAULT_CONTROL_PLANE,
    Api,
    CaFile,
    CaFingerprint,
    ControlPlane,
    Output,
    Timeout,
    Wait,
)
from interlock.cli.output import OutputFormat, console, emit, err_console, fail
from interlock.cli.status_commands import wait_for_rollout
from interlock.client import ApiError, ClientError
from interlock.model.policy.registry import KindInfo, known_kinds_text, lookup_kind

Files = Annotated[
    list[str],
    typer.Option("--filename", "-f", help="A YAML/JSON file, a directory of them, or - (stdin)."),
]
Namespace = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="The namespace (for documents that name none)."),
]

DEFAULT_NAMESPACE = "default"
_INDEX = re.compile(r"^\[(\d+)\]\.?")


def resolve_kind(word: str) -> KindInfo[Any]:
    """The kind ``word`` names (any case, plural or short form); exit 2 if none."""
    info = lookup_kind(word)
    if info is None:
        raise fail(
            f"unknown resource type {word!r}: use services, instances or one of "
            f"{known_kinds_text()}",
            2,
        )
    return info


def display_name(item: dict[str, Any]) -> str:
    """``virtualservice.networking.istio.io/reviews`` for a resource as the API shows it."""
    group = str(item.get("apiVersion", "")).partition("/")[0]
    return f"{str(item.get('kind', '')).lower()}.{group}/{item['metadata']['name']}"


def _loaded(files: list[str], namespace: str | None) -> list[Manifest]:
    try:
        manifests = with_namespace(load_manifests(files), namespace)
    except ManifestError as exc:
        raise fail(str(exc)) from None
    if not manifests:
        raise fail("no documents found in " + ", ".join(files))
    return manifests


def _explain(exc: ClientError, manifests: list[Manifest]) -> typer.Exit:
    """An API error, its fields named by file and document instead of by index."""
    if not isinstance(exc, ApiError) or not exc.problem.get("errors"):
        return fail(str(exc))
    for error in exc.problem["errors"]:
        field = str(error.get("field", ""))
        m = _INDEX.match(field)
        if m is not None and int(m.group(1)) < len(manifests):
            source = manifests[int(m.group(1))].source
            field = f"{source}: {field[m.end() :] or 'document'}"
        err_console.print(f"{field}: {error.get('message', '')}", highlight=False, markup=False)
    detail = str(exc.problem.get("detail", "")).partition(":")[0]
    return fail(f"{detail} ({exc.status} {exc.problem.get('title', 'error')})")


def print_problems(items: list[dict[str, Any]]) -> None:
    """Cross-resource problems, as kubectl prints warnings (to stderr; they do not fail)."""
    for item in items:
        for problem in item.get("problems", []):
            label = "Warning" if problem["severity"] == "warning" else "Problem"
            err_console.print(
                f"{label}: {display_name(item)}: {problem['field']}: {problem['message']}",
                highlight=False,
                markup=False,
            )


def apply(
    filename: Files,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and show what would change; write nothing.")
    ] = False,
    namespace: Namespace = None,
    wait: Wait = False,
    timeout: Timeout = 30.0,
    output: Output = OutputFormat.TABLE,
    control_plane: ControlPlane = DEFAULT_CONTROL_PLANE,
    ca_file: CaFile = None,
    ca_fingerprint: CaFingerprint = None,
) -> None:
    """Create or update policy resources from files (all of them, or none, in one revision).

    --wait has no effect with --dry-run (nothing is written)."""
    manifests = _loaded(filename, namespace)
    try:
        with Api(control_plane, ca_file, ca_fingerprint).client() as client:
            try:
                result = client.apply_resources([m.document for m in manifests], dry_run=dry_run)
            except ApiError as exc:
                raise _explain(exc, manifests) from None
            if output is OutputFormat.TABLE:
                suffix = " (dry run)" if dry_run else ""
                for item in result["items"]:
                    console.print(f"{display_name(item)} {item['result']}{suffix}", highlight=False)
                print_problems(result["items"])
            else:
                emit(result, output, [], [])
            if wait and not dry_run:
                wait_for_rollout(client, int(result["revision"]), timeout)
    except ClientError as exc:
        raise fail(str(exc)) from None


# --- get ----------------------------------------------------------------------------------


def _join(values: Any) -> str:
    return ",".join(str(v) for v in values or []) or "-"


def _labels(selector: Any) -> str:
    labels = (selector or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _scope_labels(selector: Any) -> str:
    return "mesh" if not selector else _labels(selector)


Column = tuple[str, Callable[[dict[str, Any]], str]]

COLUMNS: dict[str, list[Column]] = {
    "VirtualService": [
        ("GATEWAYS", lambda s: _join(s.get("gateways"))),
        ("HOSTS", lambda s: _join(s.get("hosts"))),
    ],
    "DestinationRule": [
        ("HOST", lambda s: str(s.get("host", "-"))),
        ("SUBSETS", lambda s: _join(x.get("name") for x in s.get("subsets") or [])),
    ],
    "Gateway": [
        (
            "SERVERS",
            lambda s: _join(
                f"{x['port']['protocol']}:{x['port']['number']}" for x in s.get("servers") or []
            ),
        ),
    ],
    "ServiceEntry": [
        ("HOSTS", lambda s: _join(s.get("hosts"))),
        ("LOCATION", lambda s: str(s.get("location", "MESH_EXTERNAL"))),
        ("RESOLUTION", lambda s: str(s.get("resolution", "NONE"))),
    ],
    "Sidecar": [
        (
            "SELECTOR",
            lambda s: _labels({"matchLabels": (s.get("workloadSelector") or {}).get("labels")}),
        ),
        ("EGRESS", lambda s: _join([h for e in s.get("egress") or [] for h in e["hosts"]])),
    ],
    "PeerAuthentication": [
        ("MODE", lambda s: str((s.get("mtls") or {}).get("mode", "UNSET"))),
        ("SELECTOR", lambda s: _labels(s.get("selector"))),
    ],
    "RequestAuthentication": [
        ("ISSUERS", lambda s: _join(r.get("issuer") for r in s.get("jwtRules") or [])),
        ("SELECTOR", lambda s: _labels(s.get("selector"))),
    ],
    "AuthorizationPolicy": [
        ("ACTION", lambda s: str(s.get("action", "ALLOW"))),
        ("RULES", lambda s: str(len(s.get("rules") or []))),
        ("SELECTOR", lambda s: _labels(s.get("selector"))),
    ],
    "RateLimit": [
        ("SERVICE", lambda s: str(s["target"]["service"])),
        (
            "LIMIT",
            lambda s: (
                f"{s['tokenBucket'].get('tokensPerFill', 1)}/"
                f"{s['tokenBucket']['fillInterval']} (burst {s['tokenBucket']['maxTokens']})"
            ),
        ),
    ],
    "Telemetry": [
        ("SCOPE", lambda s: str(s.get("service") or _scope_labels(s.get("selector")))),
        (
            "ACCESS-LOG",
            lambda s: (
                "-"
                if not s.get("accessLogging")
                else ("on" if s["accessLogging"].get("enabled", True) else "off")
            ),
        ),
        ("TRACING", lambda s: str((s.get("tracing") or {}).get("provider", "-"))),
    ],
}


def _problem_summary(problems: list[dict[str, Any]]) -> str:
    errors = sum(1 for p in problems if p["severity"] == "error")
    warnings = len(problems) - errors
    parts = [f"{errors} error(s)"] if errors else []
    parts += [f"{warnings} warning(s)"] if warnings else []
    return ", ".join(parts) or "-"


def get_resources(
    info: KindInfo[Any],
    name: str | None,
    namespace: str | None,
    output: OutputFormat,
    api: Api,
) -> None:
    """``get KIND [NAME]``: a table (one row per resource, then its problems) or JSON/YAML."""
    try:
        with api.client() as client:
            if name:
                data = client.get_resource(info.kind, namespace or DEFAULT_NAMESPACE, name)
                items = [data]
            else:
                data = client.list_resources(info.kind, namespace)
                items = list(data["items"])
    except ClientError as exc:
        raise fail(str(exc)) from None
    if output is not OutputFormat.TABLE:
        emit(data, output, [], [])
        return
    columns = COLUMNS.get(info.kind, [])
    rows = []
    for item in items:
        row: dict[str, Any] = {
            "namespace": item["metadata"]["namespace"],
            "name": item["metadata"]["name"],
            "problems": _problem_summary(item.get("problems", [])),
        }
        for header, value in columns:
            try:
                row[header] = value(item["spec"])
            except (KeyError, TypeError, AttributeError):
                row[header] = "?"
        rows.append(row)
    emit(
        data,
        output,
        [
            ("namespace", "NAMESPACE"),
            ("name", "NAME"),
            *((h, h) for h, _ in columns),
            ("problems", "PROBLEMS"),
        ],
        rows,
    )
    if name:
        print_problems(items)


# --- delete -------------------------------------------------------------------------------


def delete_resources(
    targets: list[tuple[str, str, str, str]],
    *,
    ignore_not_found: bool,
    wait: bool,
    timeout: float,
    api: Api,
) -> None:
    """Delete each ``(label, kind, namespace, name)``; like kubectl, go on after a failure
    and exit 1 at the end if any failed."""
    failed = 0
    revision: int | None = None
    try:
        with api.client() as client:
            for label, kind, namespace, name in targets:
                try:
                    revision = int(client.delete_resource(kind, namespace, name)["revision"])
                except ApiError as exc:
                    if exc.status == 404 and ignore_not_found:
                        continue
                    failed += 1
                    err_console.print(f"error: {label}: {exc}", highlight=False, markup=False)
                    continue
                console.print(f"{label} deleted", highlight=False)
            if wait and revision is not None:
                wait_for_rollout(client, revision, timeout)
    except ClientError as exc:
        raise fail(str(exc)) from None
    if failed:
        raise typer.Exit(1)


def targets_from_files(files: list[str], namespace: str | None) -> list[tuple[str, str, str, str]]:
    """What ``delete -f`` deletes: the kind, namespace and name of every document."""
    targets = []
    for manifest in _loaded(files, namespace):
        named = manifest.named()
        if named is None:
            raise fail(f"{manifest.source}: the document has no kind and metadata.name")
        kind, ns, name = named
        info = lookup_kind(kind)
        if info is None or info.kind != kind:
            raise fail(f"{manifest.source}: {kind!r} is not a resource kind Interlock supports")
        label = f"{info.qualified_name}/{name}"
        targets.append((label, info.kind, ns or DEFAULT_NAMESPACE, name))
    return targets
