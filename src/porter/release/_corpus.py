"""The regression corpus: checks every release runs, so a mistake caught once is caught in every later release.

A corpus is a directory of YAML rule files and small Python check files::

    # corpus/source-positive-flux.yaml
    name: source-positive-flux
    description: DP1 shipped negative PSF fluxes in Source (finding DP1-7)
    applies_to: {table: Source}          # or {item: source}
    rules:
      - {rule: range, column: psfFlux, min: 0}

    # corpus/object_ids.py
    APPLIES_TO = {"table": "Object"}
    def check(source):                   # a porter.schema.CatalogSource
        ...
        return CheckResult(...)          # or a list of them

A finding becomes a corpus check with ``porter release finding to-check``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..schema import ERROR, CatalogSource, CheckResult, check_rules
from ._plan import Item, PlanError

__all__ = ["corpus_checks", "write_corpus_rule"]


def _applies(spec: Mapping[str, Any], item: Item) -> bool:
    return (spec.get("table") is None or spec.get("table") == item.table) and (
        spec.get("item") is None or spec.get("item") == item.name
    )


def corpus_checks(corpus: Path, item: Item, source: CatalogSource) -> list[CheckResult]:
    """Every corpus check that applies to a catalog item, run on its catalog."""
    if not corpus.is_dir():
        return []
    out: list[CheckResult] = []
    for path in sorted(corpus.glob("*.yaml")):
        entry = yaml.safe_load(path.read_text()) or {}
        if not _applies(entry.get("applies_to") or {}, item):
            continue
        try:
            results = check_rules(item.name, source, entry.get("rules") or [])
        except Exception as exc:
            results = [CheckResult(item.name, "rules", ERROR, message=f"{path.name}: {exc}")]
        for r in results:
            r.check = f"corpus/{entry.get('name', path.stem)}: {r.check}"
        out += results
    for path in sorted(corpus.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"porter_corpus_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
            if not _applies(getattr(module, "APPLIES_TO", {}), item):
                continue
            got = module.check(source)
            results = got if isinstance(got, list) else [got]
        except Exception as exc:
            results = [
                CheckResult(item.name, path.stem, ERROR, message=f"{path.name}: {type(exc).__name__}: {exc}")
            ]
        for r in results:
            r.item = item.name
            r.check = f"corpus/{path.stem}: {r.check}"
        out += results
    return out


def write_corpus_rule(
    corpus: Path, name: str, description: str, applies_to: Mapping[str, Any], rules: list[dict[str, Any]]
) -> Path:
    """Add a YAML check to the corpus (refusing to overwrite one)."""
    if not rules:
        raise PlanError(
            "A corpus check needs at least one rule (e.g. {rule: range, column: psfFlux, min: 0})."
        )
    if not applies_to:
        raise PlanError("Say what the check applies to: --table NAME or --item NAME.")
    corpus.mkdir(parents=True, exist_ok=True)
    path = corpus / f"{name}.yaml"
    if path.exists():
        raise PlanError(f"{path} exists already; choose another name.")
    path.write_text(
        yaml.safe_dump(
            {"name": name, "description": description, "applies_to": dict(applies_to), "rules": rules},
            sort_keys=False,
        )
    )
    return path
