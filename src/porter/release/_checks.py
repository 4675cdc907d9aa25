"""Checks of a checkpoint's shipping list.

This version runs ``datasets`` items (completeness of delivered datasets
against the data IDs a query expects, missing ones grouped), ``catalog``
items (Felis conformance and content rules, through `porter.schema`; a
row_count rule may compare with another catalog item of the plan or with
a count of datasets in the butler — `_Catalogs.expected_rows`) and
``files`` items (expected counts per pattern), ``hips`` items (a HiPS
tree's properties, tiles, Allsky and MOC), ``manual`` items (a person's
recorded confirmation) and ``metrics`` items (quality metrics in the metric
store: levels, regressions against the previous release, alerts — `_metrics`).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import PorterError, did_you_mean
from ..schema import (
    ERROR,
    FAIL,
    PASS,
    PENDING,
    CatalogFileError,
    CatalogSource,
    CheckResult,
    RuleError,
    check_rules,
    conformance,
    load_schema,
    table_of,
)
from ._cells import cell_keys, write_cells
from ._corpus import corpus_checks
from ._hips import check_hips
from ._metrics import metrics_checks
from ._plan import Checkpoint, Corpus, Item, ReleasePlan

if TYPE_CHECKING:
    from ..butler import DirectButler

__all__ = ["CheckResult", "run_checks"]

SAMPLE = 20


def run_checks(
    butler: DirectButler,
    plan: ReleasePlan,
    checkpoint: Checkpoint,
    confirmations: dict[str, dict[str, Any]],
    base: Path,
    progress: Callable[[str], None] | None = None,
) -> list[CheckResult]:
    """Every check of ``checkpoint``'s items; ``confirmations`` are the manual items' recorded confirmations.

    Relative catalog locations are resolved against ``base`` (the plan's directory).  ``progress`` is
    told the name of each item as its checks start.
    """
    out: list[CheckResult] = []
    catalogs = _Catalogs(plan, base, butler)
    for item in checkpoint.items:
        if progress is not None:
            progress(item.name)
        started = time.perf_counter()
        try:
            if item.kind == "datasets":
                missing = Path(plan.release) / "missing" / checkpoint.name
                results = completeness(butler, item, base / missing)
                for r in results:
                    r.details = str(missing / r.details) if r.details else ""
                    r.cells = str(missing / r.cells) if r.cells else ""
            elif item.kind == "manual":
                results = [_manual(item, confirmations.get(item.name), f"{plan.release} {checkpoint.name}")]
            elif item.kind == "catalog":
                results = catalog_checks(item, catalogs, base, plan.corpus)
            elif item.kind == "hips":
                results = check_hips(item.name, Path(item.resolved_location(base)))
            elif item.kind == "metrics":
                results = metrics_checks(butler, plan, item, base)
            else:  # "files", the last kind an Item allows
                results = file_checks(item, Path(item.resolved_location(base)))
        except Exception as exc:  # a check that cannot run is an error result, not a crash
            results = [CheckResult(item.name, item.kind, ERROR, message=f"{type(exc).__name__}: {exc}")]
        elapsed = time.perf_counter() - started
        for r in results:
            r.seconds = r.seconds or elapsed / len(results)
        out.extend(results)
    return out


def _manual(item: Item, confirmation: dict[str, Any] | None, where: str) -> CheckResult:
    """A manual item's result: pending until a person confirms it (``where`` is "RELEASE CHECKPOINT")."""
    if confirmation is None:
        return CheckResult(
            item.name,
            "manual",
            PENDING,
            expected=item.check,
            message=f"awaiting confirmation: porter release confirm {where} {item.name} --by PERSON",
        )
    return CheckResult(
        item.name,
        "manual",
        PASS,
        value=f"confirmed by {confirmation['by']}",
        expected=item.check,
        message=confirmation.get("comment", ""),
    )


def completeness(butler: DirectButler, item: Item, missing_dir: Path | None = None) -> list[CheckResult]:
    """Delivered / expected data IDs for each dataset type; the missing ones grouped by ``group_by``.

    The database compares the two sets (`Registry.coverage`); only the missing data IDs come back,
    in batches, and all of them are written to a Parquet file in ``missing_dir`` that the result names
    (``details``).  The same pass counts the expected data IDs per cell of the completeness map
    (`cell_keys`), stored beside them (``cells``), so the map need not group them again.
    """
    spec = item.expected
    results = []
    for dataset_type in item.dataset_types:
        coverage = butler.registry.coverage(
            dataset_type,
            item.collections,
            dimensions=spec.get("dimensions") or (),
            where=spec.get("where", ""),
            datasets=spec.get("datasets"),
            expected_collections=spec.get("collections"),
            group_by=item.group_by,
        )
        required = list(butler.registry.get_dataset_type(dataset_type).dimensions.required)
        n_exp, batches = coverage.run(cells=cell_keys(required) if missing_dir is not None else None)
        keys = coverage.keys
        group_at = keys.index(item.group_by) if item.group_by else None
        groups: Counter[Any] = Counter()
        examples: dict[Any, dict[str, Any]] = {}
        first: list[dict[str, Any]] = []
        n_missing = 0
        writer = _MissingWriter(missing_dir, f"{item.name}.{dataset_type}", keys)
        with writer:
            for batch in batches:
                writer.write(batch)
                n_missing += len(batch)
                if group_at is None:
                    first.extend(dict(zip(keys, row)) for row in batch[: SAMPLE - len(first)])
                    continue
                for row in batch:
                    g = row[group_at]
                    groups[g] += 1
                    if g not in examples:
                        examples[g] = dict(zip(keys, row))
        sample: list[Any] = (
            [{item.group_by: g, "missing": n, "example": examples[g]} for g, n in groups.most_common(SAMPLE)]
            if item.group_by
            else first
        )
        fraction = (n_exp - n_missing) / n_exp if n_exp else 1.0
        cells = ""
        if missing_dir is not None and coverage.cells is not None:
            cells = writer.name.removesuffix(".parquet") + ".cells.parquet"
            write_cells(missing_dir, cells, coverage.cells.axes, coverage.cells.table)
        results.append(
            CheckResult(
                item.name,
                f"completeness {dataset_type}",
                PASS if not n_missing else FAIL,
                value=f"{n_exp - n_missing}/{n_exp} ({fraction:.1%})",
                expected=f"{n_exp}/{n_exp}",
                message=f"{n_missing} missing"
                + (f" in {len(groups)} {item.group_by}s" if item.group_by and n_missing else ""),
                sample=sample,
                details=writer.name if n_missing else "",
                cells=cells,
            )
        )
    return results


class _MissingWriter:
    """Every missing data ID of one check, streamed into a Parquet file (written atomically)."""

    def __init__(self, directory: Path | None, stem: str, keys: list[str]):
        self.directory = directory
        self.keys = keys
        self.name = f"{stem}.{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}.parquet"
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None

    def __enter__(self) -> _MissingWriter:
        return self

    def write(self, rows: Sequence[tuple]) -> None:
        if self.directory is None or not rows:
            return
        table = pa.table({k: [r[i] for r in rows] for i, k in enumerate(self.keys)})
        if self._writer is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._tmp = self.directory / f".{self.name}.tmp"
            self._writer = pq.ParquetWriter(self._tmp, table.schema)
        self._writer.write_table(table)

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if self._writer is None or self._tmp is None:
            return
        self._writer.close()
        if exc_type is None:
            self._tmp.replace(self._tmp.with_name(self.name))
        else:
            self._tmp.unlink(missing_ok=True)


class _Catalogs(Mapping[str, CatalogSource]):
    """The plan's catalog items by table name (what foreign keys are checked against), each opened once, when
    first needed; `open` gives the catalog at a location, from the same cache.

    A catalog that cannot be opened raises its `PorterError` (naming the location and the fix) where it is
    asked for, so it is an error of the check that needed it, not of whichever item came first.
    `expected_rows` answers row_count rules that compare with another item or with the butler.
    """

    def __init__(self, plan: ReleasePlan, base: Path, butler: DirectButler | None = None):
        self._plan = plan
        self._base = base
        self._butler = butler
        self._tables: dict[str, str] = {}
        self._items: dict[str, Item] = {}
        for cp in plan.checkpoints:
            for item in cp.items:
                if item.kind == "catalog" and item.location:
                    self._items.setdefault(item.name, item)
                if item.kind == "catalog" and item.table and item.location:
                    self._tables.setdefault(item.table, item.resolved_location(base))
        self._open: dict[str, CatalogSource | PorterError] = {}
        self._counts: dict[Any, int] = {}

    def open(self, location: str) -> CatalogSource:
        """The catalog at ``location`` (opened once; a failure to open is remembered and raised again)."""
        if location not in self._open:
            try:
                self._open[location] = CatalogSource(location)
            except PorterError as exc:
                self._open[location] = exc
        got = self._open[location]
        if isinstance(got, PorterError):
            raise got
        return got

    def __getitem__(self, table: str) -> CatalogSource:
        return self.open(self._tables[table])

    def expected_rows(self, rule: Mapping[str, Any]) -> tuple[int, str]:
        """The row count a row_count rule compares with, and where it comes from (`porter.schema.ExpectedRows`).

        ``equals_item: NAME``: the rows of the plan's catalog item NAME (any checkpoint's).
        ``per_dataset: {dataset_type, dimensions, collections, where}``: the distinct data IDs over
        ``dimensions`` (default: the dataset type's required dimensions) of the datasets of that type in
        ``collections`` (default: the plan's), restricted by ``where`` — one row per visit of a Visit
        table is ``{dataset_type: calexp, dimensions: [visit]}``.  Each count is computed once per run.
        """
        if "equals_item" in rule:
            name = str(rule["equals_item"])
            other = self._items.get(name)
            if other is None:
                raise RuleError(
                    f"row_count's equals_item {name!r} is not a catalog item of release {self._plan.release}."
                    + did_you_mean(name, self._items, "items")
                    + " — name one of its catalog items."
                )
            location = other.resolved_location(self._base)
            if ("item", location) not in self._counts:
                source = self.open(location)
                (n,) = source.one(f"SELECT count(*) FROM {source.sql}")
                self._counts["item", location] = int(n)
            return self._counts["item", location], f"the rows of catalog item {name!r}"
        spec = rule["per_dataset"]
        if self._butler is None:
            raise RuleError("row_count's per_dataset needs the release's repository (porter release check)")
        collections = spec.get("collections") or self._plan.collections
        if isinstance(collections, str):
            collections = [collections]
        dataset_type = str(spec["dataset_type"])
        if not collections:
            raise RuleError(
                f"row_count's per_dataset does not say where to count {dataset_type} datasets, and the plan "
                "names no collections — add collections: [...] to it (or to the plan)"
            )
        dimensions = list(spec.get("dimensions") or [])
        if not dimensions:
            dimensions = list(self._butler.get_dataset_type(dataset_type).dimensions.required)
        where = str(spec.get("where") or "")
        key = ("butler", dataset_type, tuple(dimensions), tuple(collections), where)
        if key not in self._counts:
            found = self._butler.query_data_ids(
                dimensions, datasets=dataset_type, collections=list(collections), where=where, explain=False
            )
            self._counts[key] = len({d.required_values for d in found})
        origin = (
            f"distinct {', '.join(dimensions)} of {dataset_type} datasets in {', '.join(collections)}"
            + (f" where {where}" if where else "")
        )
        return self._counts[key], origin

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)


def catalog_checks(
    item: Item, sources: Mapping[str, CatalogSource], base: Path, corpus: Corpus
) -> list[CheckResult]:
    """Schema conformance (when the item names a Felis schema and table), the item's rules, and the corpus's checks.

    A catalog whose files cannot be read (missing, empty, not Parquet, truncated, a damaged footer, no
    permission) is one ``error`` result naming each file and what is wrong with it.  Files that all read
    but disagree on their columns (one lacks a column the others have, or has it with another type) are
    one ``fail`` result naming each odd file and the columns: the delivery is wrong, and the check said
    so.  A schema that cannot be loaded, or a rule that cannot run on this catalog, is an ``error`` result
    of its own, and the other checks still run.
    """
    assert item.location is not None
    location = item.resolved_location(base)
    try:
        source = sources.open(location) if isinstance(sources, _Catalogs) else CatalogSource(location)
        source.columns()  # every file is read as Parquet, and their schemas compared, before any check
    except CatalogFileError as exc:
        drift = exc.drift
        return [
            CheckResult(
                item.name,
                "files",
                FAIL if drift else ERROR,
                value=f"{len(exc.problems)} file(s) with another schema" if drift else location,
                expected="every file with the same columns and types" if drift else None,
                message=str(exc),
                sample=exc.problems,
            )
        ]
    except PorterError as exc:
        return [
            CheckResult(
                item.name,
                "files",
                ERROR,
                value=location,
                message=str(exc),
                sample=getattr(exc, "problems", []),
            )
        ]
    out: list[CheckResult] = []
    if item.schema_file and item.table:
        try:
            table = table_of(load_schema(item.resolved_schema_file(base) or ""), item.table)
        except PorterError as exc:
            out.append(CheckResult(item.name, "schema", ERROR, expected=item.schema_file, message=str(exc)))
        else:
            out += conformance(item.name, source, table, sources)
    expected_rows = sources.expected_rows if isinstance(sources, _Catalogs) else None
    for rule in item.rules:
        try:
            out += check_rules(item.name, source, [rule], expected_rows=expected_rows)
        except PorterError as exc:  # a column the catalog lacks; a file found damaged by an earlier check
            out.append(
                CheckResult(
                    item.name,
                    f"rule {rule.get('rule')}",
                    ERROR,
                    message=str(exc),
                    sample=getattr(exc, "problems", []),
                )
            )
    out += corpus_checks(base, corpus, item, source)
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
