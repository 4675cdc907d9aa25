"""Checks of a checkpoint's shipping list.

This version runs ``datasets`` items (completeness of delivered datasets
against the data IDs a query expects, missing ones grouped), ``catalog``
items (Felis conformance and content rules, through `porter.schema`) and
``files`` items (expected counts per pattern), ``hips`` items (a HiPS
tree's properties, tiles, Allsky and MOC) and ``manual`` items (a person's
recorded confirmation).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..schema import (
    ERROR,
    FAIL,
    PASS,
    CatalogSource,
    CheckResult,
    check_rules,
    conformance,
    load_schema,
    table_of,
)
from ._corpus import corpus_checks
from ._hips import check_hips
from ._plan import Checkpoint, Item, ReleasePlan

if TYPE_CHECKING:
    from ..butler import Butler

__all__ = ["CheckResult", "run_checks"]

SAMPLE = 20


def run_checks(
    butler: Butler,
    plan: ReleasePlan,
    checkpoint: Checkpoint,
    confirmations: dict[str, dict[str, Any]],
    base: Path,
) -> list[CheckResult]:
    """Every check of ``checkpoint``'s items; ``confirmations`` are the manual items' recorded confirmations.

    Relative catalog locations are resolved against ``base`` (the plan's directory).
    """
    out: list[CheckResult] = []
    catalogs: dict[str, CatalogSource] = {}
    for item in checkpoint.items:
        started = time.perf_counter()
        try:
            if item.kind == "datasets":
                results = completeness(butler, item)
            elif item.kind == "manual":
                results = [_manual(item, confirmations.get(item.name))]
            elif item.kind == "catalog":
                results = catalog_checks(item, _sources(plan, base, catalogs), base, base / plan.corpus)
            elif item.kind == "hips":
                results = check_hips(item.name, Path(_resolve(str(item.location), base)))
            else:  # "files", the last kind an Item allows
                results = file_checks(item, Path(_resolve(str(item.location), base)))
        except Exception as exc:  # a check that cannot run is an error result, not a crash
            results = [CheckResult(item.name, item.kind, ERROR, message=f"{type(exc).__name__}: {exc}")]
        elapsed = time.perf_counter() - started
        for r in results:
            r.seconds = r.seconds or elapsed / len(results)
        out.extend(results)
    return out


def _manual(item: Item, confirmation: dict[str, Any] | None) -> CheckResult:
    if confirmation is None:
        return CheckResult(
            item.name,
            "manual",
            FAIL,
            expected=item.check,
            message="not confirmed yet (porter release confirm)",
        )
    return CheckResult(
        item.name,
        "manual",
        PASS,
        value=f"confirmed by {confirmation['by']}",
        expected=item.check,
        message=confirmation.get("comment", ""),
    )


def completeness(butler: Butler, item: Item) -> list[CheckResult]:
    """Delivered / expected data IDs for each dataset type; the missing ones listed, grouped by ``group_by``."""
    spec = item.expected
    dims = list(spec.get("dimensions") or [])
    results = []
    for dataset_type in item.dataset_types:
        dt = butler.get_dataset_type(dataset_type)
        wanted_dims = dims or list(dt.dimensions.required)
        kwargs: dict[str, Any] = {"where": spec.get("where", "")}
        if spec.get("datasets"):
            kwargs["datasets"] = spec["datasets"]
            kwargs["collections"] = spec.get("collections") or item.collections
        expected = {
            d.subset(dt.dimensions).required_values: d for d in butler.query_data_ids(wanted_dims, **kwargs)
        }
        delivered = {
            r.data_id.required_values
            for r in butler.query_datasets(dataset_type, item.collections, where=spec.get("where", ""))
        }
        missing = [expected[k] for k in sorted(set(expected) - delivered)]
        n_exp = len(expected)
        fraction = (n_exp - len(missing)) / n_exp if n_exp else 1.0
        groups: dict[Any, list[Any]] = defaultdict(list)
        for d in missing:
            key = d[item.group_by] if item.group_by and item.group_by in d else None
            groups[key].append(dict(d.required))
        sample: list[Any] = (
            [
                {item.group_by: k, "missing": len(v), "example": v[0]}
                for k, v in sorted(groups.items(), key=lambda kv: -len(kv[1]))
            ]
            if item.group_by
            else [dict(d.required) for d in missing]
        )[:SAMPLE]
        results.append(
            CheckResult(
                item.name,
                f"completeness {dataset_type}",
                PASS if not missing else FAIL,
                value=f"{n_exp - len(missing)}/{n_exp} ({fraction:.1%})",
                expected=f"{n_exp}/{n_exp}",
                message=f"{len(missing)} missing"
                + (f" in {len(groups)} {item.group_by}s" if item.group_by and missing else ""),
                sample=sample,
            )
        )
    return results


def _sources(plan: ReleasePlan, base: Path, cache: dict[str, CatalogSource]) -> Mapping[str, CatalogSource]:
    """Every catalog item of the plan by table name (what foreign keys are checked against), opened lazily once."""
    if not cache:
        for cp in plan.checkpoints:
            for item in cp.items:
                if item.kind == "catalog" and item.table and item.location:
                    location = _resolve(item.location, base)
                    if location.startswith("s3://") or Path(location).exists():
                        cache[item.table] = CatalogSource(location)
    return cache


def _resolve(location: str, base: Path) -> str:
    if location.startswith("s3://") or Path(location).is_absolute():
        return location
    return str(base / location)


def catalog_checks(
    item: Item, sources: Mapping[str, CatalogSource], base: Path, corpus: Path
) -> list[CheckResult]:
    """Schema conformance (when the item names a Felis schema and table), the item's rules, and the corpus's checks."""
    assert item.location is not None
    source = sources.get(item.table or "") or CatalogSource(_resolve(item.location, base))
    out: list[CheckResult] = []
    if item.schema_file and item.table:
        table = table_of(load_schema(item.schema_file), item.table)
        out += conformance(item.name, source, table, sources)
    out += check_rules(item.name, source, item.rules)
    out += corpus_checks(corpus, item, source)
    return out or [
        CheckResult(item.name, "catalog", FAIL, message="the item names no schema table and no rules")
    ]


def file_checks(item: Item, root: Path) -> list[CheckResult]:
    """Each pattern of the item matches the expected number of files under its location."""
    if not root.is_dir():
        return [CheckResult(item.name, "files", FAIL, message=f"{root} is not a directory")]
    out = []
    for pattern, expected in item.patterns.items():
        found = sorted(p for p in root.glob(pattern) if p.is_file())
        out.append(
            CheckResult(
                item.name,
                f"files {pattern}",
                PASS if len(found) == expected else FAIL,
                value=len(found),
                expected=expected,
                sample=[str(p.relative_to(root)) for p in found[:5]],
            )
        )
    return out or [CheckResult(item.name, "files", FAIL, message="the item lists no patterns")]
