"""Reading ``-f FILE|DIR|-`` like kubectl: YAML (several documents per file, ``---``) or JSON,
every ``.yaml``/``.yml``/``.json`` file of a directory (sorted, not recursive), ``-`` for
stdin. A ``kind: List`` document stands for its ``items``."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(Exception):
    """A file that cannot be read or parsed; the message names it."""


@dataclass(frozen=True)
class Manifest:
    """One document and where it came from (``vs.yaml``, ``vs.yaml (document 2)``)."""

    source: str
    document: Any

    def named(self) -> tuple[str, str, str] | None:
        """``(kind, namespace, name)`` when the document says them (namespace may be empty)."""
        doc = self.document
        if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
            return None
        kind, name = doc.get("kind"), doc["metadata"].get("name")
        namespace = doc["metadata"].get("namespace") or ""
        if isinstance(kind, str) and isinstance(name, str) and isinstance(namespace, str):
            return kind, namespace, name
        return None


def load_manifests(paths: Iterable[str], stdin: TextIO | None = None) -> list[Manifest]:
    """Every document of every path, in order. Raises :class:`ManifestError`."""
    manifests: list[Manifest] = []
    for path in paths:
        if path == "-":
            manifests.extend(_parse((stdin or sys.stdin).read(), "stdin"))
            continue
        target = Path(path)
        if target.is_dir():
            files = sorted(p for p in target.iterdir() if p.is_file() and p.suffix in SUFFIXES)
            if not files:
                raise ManifestError(f"{path}: no {', '.join(SUFFIXES)} files in the directory")
            for file in files:
                manifests.extend(_parse(_read(file), str(file)))
        else:
            manifests.extend(_parse(_read(target), path))
    return manifests


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file or directory") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot read it ({e})") from None


def _parse(text: str, source: str) -> list[Manifest]:
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.MarkedYAMLError as e:
        where = ""
        if e.problem_mark is not None:
            where = f" (line {e.problem_mark.line + 1}, column {e.problem_mark.column + 1})"
        raise ManifestError(f"{source}: not valid YAML: {e.problem or e.context}{where}") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise ManifestError(f"{source}: not valid YAML: {e}") from None
    expanded: list[Any] = []
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "List":
            expanded.extend(document.get("items") or [])
        elif isinstance(document, dict) and "items" in document and "kind" not in document:
            expanded.extend(document.get("items") or [])  # what `get -o yaml` prints for a list
        else:
            expanded.append(document)
    if len(expanded) == 1:
        return [Manifest(source, expanded[0])]
    return [Manifest(f"{source} (document {i})", d) for i, d in enumerate(expanded, start=1)]


def with_namespace(manifests: list[Manifest], namespace: str | None) -> list[Manifest]:
    """Documents without a namespace get ``namespace`` (``-n``); others keep theirs."""
    if not namespace:
        return manifests
    out = []
    for m in manifests:
        doc = m.document
        metadata = doc.get("metadata") if isinstance(doc, dict) else None
        if isinstance(metadata, dict) and not metadata.get("namespace"):
            doc = {**doc, "metadata": {**metadata, "namespace": namespace}}
        out.append(Manifest(m.source, doc))
    return out
