"""Does a catalog conform to its Felis table?  Checked with DuckDB over Parquet, streaming.

Each check is one aggregate SQL query over ``read_parquet(...)``, so a
catalog of any size is scanned, never loaded: columns present, types
compatible, non-null columns without nulls (or NaN), primary-key
uniqueness, foreign keys resolved against another catalog, and units/UCDs
declared.  Content rules from the release plan (row counts, value ranges,
finite values, sky footprint, per-band coverage) run the same way.
"""

from __future__ import annotations

import glob as globmod
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import PorterError, did_you_mean
from ._felis import _FELIS, column_name, compatibility, primary_key, sql_family
from ._postgres_source import is_postgres_location, snapshot_table
from ._result import ERROR, FAIL, PASS, WARN, CheckResult

__all__ = [
    "RULES",
    "CatalogSource",
    "RuleError",
    "check_rules",
    "conformance",
    "schema_diff",
    "validate_rule",
]

SAMPLE = 10
_UNIT_UCDS = ("pos.eq", "phot.flux", "phot.mag", "stat.error;pos", "stat.error;phot", "time.epoch")


class RuleError(PorterError, ValueError):
    """A content rule in a plan that cannot be run as written."""


class CatalogFileError(PorterError):
    """Files of a catalog that cannot be used: not Parquet, empty, truncated, with a damaged footer or data,
    unreadable, or with a schema that disagrees with the catalog's other files.

    ``problems`` lists ``{"file": …, "problem": …}`` for each; the message names them all and the fix.
    """

    def __init__(self, location: str, problems: list[dict[str, str]]):
        self.location = location
        self.problems = problems
        shown = "; ".join(f"{p['file']} {p['problem']}" for p in problems[:SAMPLE])
        more = f"; and {len(problems) - SAMPLE} more" if len(problems) > SAMPLE else ""
        fixes = list(dict.fromkeys(_fix(p["problem"]) for p in problems))
        n = len(problems)
        super().__init__(
            f"Catalog {location}: {n} file{'s' if n > 1 else ''} cannot be used: {shown}{more} — "
            + "; ".join(fixes)
            + "."
        )


def _fix(problem: str) -> str:
    """What to do about a damaged catalog file (`CatalogFileError`)."""
    if "permission denied" in problem:
        return "make the file readable by whoever runs the checks"
    if "broken link" in problem:
        return "point the link at the file, or remove it"
    if "another schema" in problem:
        return "write every file of the catalog with the same columns and types (or remove the odd one)"
    return "deliver the file again (or remove it from the catalog's location)"


class CatalogQueryError(PorterError):
    """A check's query over a catalog failed although every file of it reads as Parquet."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_MAGIC = b"PAR1"


def _damage(f: Any, size: int, deep: bool) -> str | None:
    """What is wrong with one Parquet file, open for reading (binary) and ``size`` bytes long; None if nothing.

    The header and footer are looked at first (empty, not Parquet at all, truncated, a damaged footer);
    with ``deep``, every row group is decoded too (damaged data pages).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if size == 0:
        return "is empty (0 bytes)"
    if size < 12:
        return f"is too small to be a Parquet file ({size} bytes)"
    head = f.read(4)
    f.seek(size - 8)
    tail = f.read(8)
    if head != _MAGIC:
        return f"is not a Parquet file (it begins with {head!r}, not {_MAGIC!r})"
    if tail[4:] != _MAGIC:
        return f"is truncated, or its footer is missing ({size} bytes, not ending in {_MAGIC!r})"
    footer = int.from_bytes(tail[:4], "little")
    if footer > size - 12:
        return f"has a damaged footer (it claims {footer} bytes; the file has {size})"
    f.seek(0)
    try:
        parquet = pq.ParquetFile(f)
    except (pa.ArrowException, OSError, ValueError) as exc:
        return f"has a damaged footer ({_one_line(exc)})"
    if deep:
        for i in range(parquet.num_row_groups):
            try:
                parquet.read_row_group(i)
            except (pa.ArrowException, OSError, ValueError) as exc:
                return f"has damaged data in row group {i} ({_one_line(exc)})"
    return None


class CatalogSource:
    """A catalog as DuckDB sees it: Parquet files under a local path or glob, under ``s3://`` (read through
    pyarrow's S3 client), or a PostgreSQL table (``postgresql://…/db#schema.Table``, snapshotted to Parquet).

    Before the first query, every file is checked once: readable, not empty, its Parquet footer intact,
    and its schema the same as the others'.  A damaged file is a `CatalogFileError` naming it and what is
    wrong — never DuckDB's message about an anonymous file, nor a file silently skipped.  A query that
    fails later (damaged data pages) is diagnosed file by file the same way.
    """

    def __init__(self, location: str, con: Any = None):
        import duckdb

        self.location = location
        self.con = con or duckdb.connect()
        # Parquet min/max statistics leave NaN out, and DuckDB prunes scans by them: with these optimizers on,
        # `WHERE isnan(x)` finds nothing in a file whose statistics say x ∈ [1, 3].  Checks scan everything anyway.
        self.con.execute("SET disabled_optimizers = 'filter_pushdown,statistics_propagation'")
        self._s3: Any = None
        self._types: dict[str, str] | None = None  # a SQL table's own column types, or DuckDB's once read
        self._checked = False
        self._failure: CatalogFileError | None = None
        if is_postgres_location(location):
            self._snapshot = tempfile.TemporaryDirectory(prefix="porter-catalog-")
            self._types = snapshot_table(location, Path(self._snapshot.name))
            pattern = str(Path(self._snapshot.name) / "*.parquet")
            self._checked = True  # written just now by porter
        elif location.startswith("s3://"):
            pattern = location.rstrip("/") + ("/**/*.parquet" if not location.endswith(".parquet") else "")
            if not self.register_s3().glob(pattern.removeprefix("s3://")):
                raise PorterError(f"No Parquet files at {location}; check the item's location.")
        else:
            path = Path(location)
            pattern = str(path / "**" / "*.parquet") if path.is_dir() else location
            if not globmod.glob(pattern, recursive=True):
                raise PorterError(f"No Parquet files at {location}; check the item's location.")
        self._pattern = pattern
        self.sql = f"read_parquet({_literal(pattern)}, union_by_name = true)"

    def register_s3(self) -> Any:
        """Let DuckDB read ``s3://`` through pyarrow's S3 client (the endpoint and credentials porter uses).

        DuckDB's own httpfs extension is downloaded at run time from extensions.duckdb.org, which a
        site behind a firewall cannot reach; pyarrow ships its S3 client, and fsspec's wrapper hands it
        to DuckDB, which still reads only the byte ranges (columns, row groups) a query needs.
        """
        if self._s3 is None:
            self._s3 = _s3_filesystem()
            self.con.register_filesystem(self._s3)
        return self._s3

    # --- the files ---------------------------------------------------------------------------------------

    def _files(self) -> list[tuple[str, Any]]:
        """(name as reported, how to open it) for each file of the catalog (S3 names keep their scheme)."""
        if self._pattern.startswith("s3://"):
            fs = self.register_s3()
            return [(f"s3://{p}", p) for p in sorted(fs.glob(self._pattern.removeprefix("s3://")))]
        return [(p, p) for p in sorted(globmod.glob(self._pattern, recursive=True))]

    def _file_damage(self, name: str, handle: Any, deep: bool) -> str | None:
        """What is wrong with one file (see `_damage`), opening it here; None if it reads."""
        if name.startswith("s3://"):
            fs = self.register_s3()
            try:
                size = int(fs.size(handle))
                with fs.open(handle, "rb") as f:
                    return _damage(f, size, deep)
            except OSError as exc:
                return f"cannot be read ({exc})"
        path = Path(handle)
        problem = _shallow(path)
        if problem or path.is_dir():
            return problem
        try:
            size = path.stat().st_size
            with path.open("rb") as f:
                return _damage(f, size, deep)
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc})"

    def _damaged(self, deep: bool) -> list[dict[str, str]]:
        out = []
        for name, handle in self._files():
            problem = self._file_damage(name, handle, deep)
            if problem:
                out.append({"file": name, "problem": problem})
        return out

    def _check_files(self) -> None:
        """Once, before the first query: every file reads as Parquet and has the same schema as the others."""
        import duckdb

        if self._checked:
            return
        if self._failure is not None:
            raise self._failure
        local = not self._pattern.startswith("s3://")
        # Links to nothing, unreadable and empty files first: DuckDB would skip some of them without a word.
        if local and any(_shallow(Path(handle)) for _, handle in self._files()):
            problems = self._damaged(deep=False)  # all of them, not just the first kind found
        else:
            try:
                rows = self.con.execute(
                    "SELECT file_name, name, duckdb_type, num_children FROM parquet_schema("
                    f"{_literal(self._pattern)})"
                ).fetchall()
            except duckdb.Error as exc:
                problems = self._damaged(deep=False)
                if not problems:
                    raise CatalogQueryError(
                        f"Catalog {self.location}: its Parquet files cannot be read ({_first_line(exc)})."
                    ) from None
            else:
                problems = _schema_mismatches(rows)
        if problems:
            self._failure = CatalogFileError(self.location, problems)
            raise self._failure
        self._checked = True

    def _execute(self, query: str) -> Any:
        import duckdb

        self._check_files()
        try:
            return self.con.execute(query)
        except (duckdb.DataError, duckdb.BinderException, duckdb.ParserException) as exc:
            # The data or the query, not the files: a value that does not convert, an unknown column.
            raise CatalogQueryError(
                f"Catalog {self.location}: a check's query failed: {_first_line(exc)}"
            ) from None
        except duckdb.Error as exc:
            problems = self._damaged(deep=True) if not is_postgres_location(self.location) else []
            if problems:  # remembered: the next query would fail on the same file
                self._failure = CatalogFileError(self.location, problems)
                self._checked = False
                raise self._failure from None
            raise CatalogQueryError(
                f"Catalog {self.location}: a check's query failed: {_first_line(exc)}"
            ) from None

    # --- queries -----------------------------------------------------------------------------------------

    def columns(self) -> dict[str, str]:
        """Column name → DuckDB type of the catalog (a SQL table's own types for a PostgreSQL table)."""
        if self._types is None:
            self._types = {r[0]: r[1] for r in self._execute(f"DESCRIBE SELECT * FROM {self.sql}").fetchall()}
        return dict(self._types)

    def one(self, query: str) -> Any:
        """The first row of a query (over `sql`)."""
        return self._execute(query).fetchone()

    def rows(self, query: str) -> list[tuple]:
        """Every row of a query (over `sql`)."""
        return self._execute(query).fetchall()


def _shallow(path: Path) -> str | None:
    """What is wrong with a local file that DuckDB might pass over in silence: a dangling link, no read
    permission, no bytes; None otherwise (directories too: no one reads them)."""
    try:
        if path.is_symlink() and not path.exists():
            return f"is a broken link (to {os.readlink(path)})"
        if path.is_dir():
            return None
        if not os.access(path, os.R_OK):
            return "cannot be read: permission denied"
        if path.stat().st_size == 0:
            return "is empty (0 bytes)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _schema_mismatches(rows: Sequence[tuple]) -> list[dict[str, str]]:
    """Files whose columns (names and types) differ from the catalog's most common schema, and how."""
    schemas: dict[str, list[tuple[str, str]]] = {}
    for file, name, duckdb_type, children in rows:
        if duckdb_type is None and children:  # the root of a file's schema tree
            schemas.setdefault(file, [])
            continue
        schemas.setdefault(file, []).append((name, duckdb_type))
    # Column order does not matter (the files are read by name); names and types do.
    shapes = {file: tuple(sorted(cols)) for file, cols in schemas.items()}
    if len(set(shapes.values())) <= 1:
        return []
    counts: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for file, shape in shapes.items():
        counts.setdefault(shape, []).append(file)
    order = {file: i for i, file in enumerate(schemas)}
    common, holders = max(counts.items(), key=lambda kv: (len(kv[1]), -min(order[f] for f in kv[1])))
    reference = dict(common)
    example = Path(holders[0]).name
    out = []
    for file, cols in schemas.items():
        if shapes[file] == common:
            continue
        have = dict(cols)
        differ = [f"{c} is {have[c]}, not {t}" for c, t in reference.items() if c in have and have[c] != t]
        missing = [c for c in reference if c not in have]
        extra = [c for c in have if c not in reference]
        what = (
            "; ".join(
                ([f"column {'; column '.join(differ[:SAMPLE])}"] if differ else [])
                + ([f"lacks {missing[:SAMPLE]}"] if missing else [])
                + ([f"has {extra[:SAMPLE]} besides"] if extra else [])
            )
            or "differs in its nested columns"
        )
        out.append({"file": file, "problem": f"has another schema than {example}: {what}"})
    return out


def _s3_filesystem() -> Any:
    """pyarrow's S3 filesystem for porter's endpoint, as an fsspec filesystem answering to ``s3://``."""
    from fsspec.implementations.arrow import ArrowFSWrapper
    from pyarrow import fs

    from ..datastore._uri import s3_endpoint_url

    class S3(ArrowFSWrapper):
        protocol = "s3"

    endpoint = s3_endpoint_url() or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, Any] = {"region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        options |= {"endpoint_override": host.rstrip("/"), "scheme": scheme}
    return S3(fs.S3FileSystem(**options))


def _timed(item: str, check: str, fn: Any) -> CheckResult:
    started = time.perf_counter()
    try:
        result: CheckResult = fn()
    except PorterError as exc:  # its message names what is wrong and the fix
        result = CheckResult(item, check, ERROR, message=str(exc), sample=getattr(exc, "problems", []))
    except Exception as exc:
        result = CheckResult(item, check, ERROR, message=f"{type(exc).__name__}: {exc}")
    result.seconds = time.perf_counter() - started
    return result


def conformance(
    item: str, source: CatalogSource, table: Any, references: Mapping[str, CatalogSource] | None = None
) -> list[CheckResult]:
    """Columns, types, nullability, primary key, foreign keys and units of ``source`` against Felis ``table``."""
    have = source.columns()
    want = {c.name: c for c in table.columns}
    out = [_timed(item, "columns", lambda: _columns(item, have, want))]
    out.append(_timed(item, "types", lambda: _types(item, have, want)))
    out.append(_timed(item, "not-null", lambda: _not_null(item, source, have, want, primary_key(table))))
    pk = primary_key(table)
    if pk:
        out.append(_timed(item, "primary key", lambda: _unique(item, "primary key", source, pk, have)))
    for fk in table.constraints:
        if type(fk).__name__ != "ForeignKeyConstraint":
            continue
        cols = [column_name(c) for c in fk.columns]
        target = fk.referenced_columns[0].lstrip("#").split(".")[0]
        ref_cols = [column_name(c) for c in fk.referenced_columns]
        label = f"foreign key {','.join(cols)} → {target}"
        try:
            ref = (references or {}).get(target)
        except PorterError as exc:  # the referenced catalog is there but cannot be read
            out.append(CheckResult(item, label, ERROR, message=f"the {target} catalog cannot be read: {exc}"))
            continue
        if ref is None:
            out.append(
                CheckResult(
                    item, label, WARN, message=f"no {target} catalog in the shipping list to check against"
                )
            )
        else:
            out.append(
                _timed(
                    item,
                    label,
                    lambda c=cols, r=ref, rc=ref_cols, lb=label: _foreign(item, lb, source, c, r, rc),
                )
            )
    out.append(_timed(item, "units and UCDs", lambda: _units(item, table)))
    return out


def _columns(item: str, have: Mapping[str, str], want: Mapping[str, Any]) -> CheckResult:
    missing = [c for c in want if c not in have]
    extra = [c for c in have if c not in want]
    status = FAIL if missing else WARN if extra else PASS
    msg = (
        (f"missing {missing[:SAMPLE]}" if missing else "")
        + ("; " if missing and extra else "")
        + (f"not in the schema {extra[:SAMPLE]}" if extra else "")
    )
    return CheckResult(
        item,
        "columns",
        status,
        value=f"{len(want) - len(missing)}/{len(want)} present",
        expected=f"{len(want)} columns",
        message=msg,
        sample=missing[:SAMPLE] or extra[:SAMPLE],
    )


def _types(item: str, have: Mapping[str, str], want: Mapping[str, Any]) -> CheckResult:
    bad: list[dict[str, str]] = []
    worst = PASS
    for name, col in want.items():
        if name not in have:
            continue
        status, why = compatibility(col.datatype.value, have[name])
        if status != PASS:
            bad.append(
                {
                    "column": name,
                    "data": have[name],
                    "schema": col.datatype.value,
                    "why": why,
                    "status": status,
                }
            )
            worst = FAIL if FAIL in (status, worst) else WARN
    n_fail = sum(b["status"] == FAIL for b in bad)
    return CheckResult(
        item,
        "types",
        worst,
        value=f"{len(bad)} mismatched",
        expected="types compatible with the schema",
        message="; ".join(f"{b['column']}: {b['why']}" for b in bad[:SAMPLE]) if bad else "",
        sample=bad[:SAMPLE] if n_fail or bad else [],
    )


def _not_null(
    item: str, source: CatalogSource, have: Mapping[str, str], want: Mapping[str, Any], pk: Sequence[str]
) -> CheckResult:
    cols = [c for c, col in want.items() if not col.nullable and c in have]
    if not cols:
        return CheckResult(item, "not-null", PASS, value="no non-null columns", expected="")
    missing = {
        c: f"{_quote(c)} IS NULL" + (f" OR isnan({_quote(c)})" if sql_family(have[c]) == "float" else "")
        for c in cols
    }
    terms = [f"count(*) FILTER (WHERE {missing[c]})" for c in cols]
    counts = source.one(f"SELECT {', '.join(terms)} FROM {source.sql}")
    offenders = {c: int(n) for c, n in zip(cols, counts) if n}
    sample: list[Any] = []
    if offenders:
        c = next(iter(offenders))
        key = ", ".join(_quote(k) for k in pk if k in have) or "*"
        sample = [
            list(r) for r in source.rows(f"SELECT {key} FROM {source.sql} WHERE {missing[c]} LIMIT {SAMPLE}")
        ]
    return CheckResult(
        item,
        "not-null",
        FAIL if offenders else PASS,
        value=offenders or "0 nulls",
        expected=f"no null or NaN in {cols}",
        message=", ".join(f"{c}: {n} null/NaN" for c, n in offenders.items()),
        sample=sample,
    )


def _unique(
    item: str, check: str, source: CatalogSource, cols: Sequence[str], have: Mapping[str, str]
) -> CheckResult:
    missing = [c for c in cols if c not in have]
    if missing:
        return CheckResult(item, check, FAIL, message=f"key column(s) {missing} missing")
    key = ", ".join(_quote(c) for c in cols)
    total, distinct = source.one(f"SELECT count(*), count(DISTINCT ({key})) FROM {source.sql}")
    dupes = int(total) - int(distinct)
    sample = []
    if dupes:
        sample = [
            list(r)
            for r in source.rows(
                f"SELECT {key}, count(*) AS n FROM {source.sql} GROUP BY {key} HAVING n > 1 ORDER BY n DESC LIMIT {SAMPLE}"
            )
        ]
    return CheckResult(
        item,
        check,
        FAIL if dupes else PASS,
        value=f"{dupes} duplicated rows",
        expected=f"({key}) unique over {total} rows",
        message=f"{len(sample)}+ duplicated keys" if dupes else "",
        sample=sample,
    )


def _foreign(
    item: str,
    label: str,
    source: CatalogSource,
    cols: Sequence[str],
    ref: CatalogSource,
    ref_cols: Sequence[str],
) -> CheckResult:
    ref.columns()  # the reference catalog's files are checked too, and named if damaged
    on = " AND ".join(f"s.{_quote(a)} = r.{_quote(b)}" for a, b in zip(cols, ref_cols))
    notnull = " AND ".join(f"s.{_quote(a)} IS NOT NULL" for a in cols)
    if ref.location.startswith("s3://"):
        source.register_s3()  # the reference catalog is read through this source's connection
    query = f"FROM {source.sql} s ANTI JOIN {ref.sql} r ON {on} WHERE {notnull}"
    (dangling,) = source.one(f"SELECT count(*) {query}")
    sample = (
        [
            list(r)
            for r in source.rows(
                f"SELECT DISTINCT {', '.join('s.' + _quote(a) for a in cols)} {query} LIMIT {SAMPLE}"
            )
        ]
        if dangling
        else []
    )
    return CheckResult(
        item,
        label,
        FAIL if dangling else PASS,
        value=f"{dangling} dangling",
        expected="every reference resolves",
        message=f"{dangling} rows refer to missing {','.join(ref_cols)}" if dangling else "",
        sample=sample,
    )


def _units(item: str, table: Any) -> CheckResult:
    missing = [c.name for c in table.columns if (c.ivoa_ucd or "").startswith(_UNIT_UCDS) and not c.ivoa_unit]
    no_ucd = [c.name for c in table.columns if not c.ivoa_ucd]
    status = WARN if missing or no_ucd else PASS
    msg = (f"no unit for {missing[:SAMPLE]}" if missing else "") + (
        f"; no UCD for {len(no_ucd)} columns" if no_ucd else ""
    )
    return CheckResult(
        item,
        "units and UCDs",
        status,
        value=f"{len(missing)} without unit, {len(no_ucd)} without UCD",
        expected="declared",
        message=msg.lstrip("; "),
        sample=(missing or no_ucd)[:SAMPLE],
    )


# --- content rules ------------------------------------------------------------------------------------------


RULES = ("row_count", "range", "finite", "not_null", "unique", "footprint", "band_coverage")
"""The content rules a plan or the regression corpus may name."""

_RULE_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # rule: (every key it takes, the keys it needs)
    "row_count": (("min", "max"), ()),
    "range": (("column", "min", "max"), ("column",)),
    "finite": (("columns",), ("columns",)),
    "not_null": (("columns",), ("columns",)),
    "unique": (("columns",), ("columns",)),
    "footprint": (("ra", "dec", "circle", "ra_min", "ra_max", "dec_min", "dec_max"), ()),
    "band_coverage": (("column", "bands", "min_fraction"), ("column", "bands")),
}
_EXAMPLES = {
    "row_count": "{rule: row_count, min: 1000}",
    "range": "{rule: range, column: psfFlux, min: 0}",
    "finite": "{rule: finite, columns: [coord_ra, coord_dec]}",
    "not_null": "{rule: not_null, columns: [objectId]}",
    "unique": "{rule: unique, columns: [objectId]}",
    "footprint": "{rule: footprint, ra_min: 149, ra_max: 151, dec_min: 1, dec_max: 3} "
    "or {rule: footprint, circle: [150, 2, 1.5]}",
    "band_coverage": "{rule: band_coverage, column: '{band}_psfFlux', bands: [g, r, i], min_fraction: 0.5}",
}
_NUMERIC_RULES = ("range", "finite", "footprint", "band_coverage")


def _show_rule(rule: Any) -> str:
    """A rule as a one-line flow mapping, cut short if long (for messages)."""
    if isinstance(rule, Mapping):
        text = "{" + ", ".join(f"{k}: {v!r}" for k, v in rule.items()) + "}"
    else:
        text = repr(rule)
    return text if len(text) <= 120 else text[:117] + "…"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_rule(rule: Any) -> dict[str, Any]:
    """Check that a content rule can be run as written, before any catalog is read; a copy of it.

    Raises `RuleError` naming the rule, what is wrong and the fix: an unknown rule (with the closest
    name), a key the rule does not take, a missing key, a value of the wrong type or out of range.
    Whether the named columns exist depends on the catalog, and is checked when the rule runs.
    """

    def bad(problem: str, fix: str) -> RuleError:
        return RuleError(f"rule {_show_rule(rule)}: {problem} — {fix}")

    if not isinstance(rule, Mapping):
        raise bad("a rule is a mapping", "write it as {rule: NAME, …}, e.g. " + _EXAMPLES["range"])
    kind = rule.get("rule")
    if not isinstance(kind, str) or kind not in _RULE_KEYS:
        if kind is None:
            raise bad("it does not say which rule", "add rule: NAME, one of " + ", ".join(RULES))
        raise bad(
            f"unknown rule {kind!r}." + did_you_mean(str(kind), RULES, "rules"),
            "use one of " + ", ".join(RULES),
        )
    takes, needs = _RULE_KEYS[kind]
    example = _EXAMPLES[kind]
    for key in rule:
        if key != "rule" and key not in takes:
            raise bad(
                f"{kind} takes no {key!r}." + did_you_mean(str(key), takes),
                f"remove it; {kind} takes {', '.join(takes)}, e.g. {example}",
            )
    for key in needs:
        if rule.get(key) is None:
            raise bad(f"{kind} needs {key!r}", f"add it, e.g. {example}")
    for key in ("column", "ra", "dec"):
        if key in rule and not (isinstance(rule[key], str) and rule[key].strip()):
            raise bad(f"{key} must be a column name, not {rule[key]!r}", f"e.g. {example}")
    if "columns" in rule:
        cols = rule["columns"]
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) and c.strip() for c in cols):
            raise bad("columns must be a non-empty list of column names", f"e.g. {example}")
    if kind in ("range", "row_count"):
        lo, hi = rule.get("min"), rule.get("max")
        if lo is None and hi is None:
            raise bad(f"{kind} needs min, max or both", f"e.g. {example}")
        for key, v in (("min", lo), ("max", hi)):
            if v is None:
                continue
            if kind == "row_count" and not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
                raise bad(f"{key} must be a whole number ≥ 0, not {v!r}", f"e.g. {example}")
            if not _number(v):
                raise bad(f"{key} must be a finite number, not {v!r}", f"e.g. {example}")
        if lo is not None and hi is not None and lo > hi:
            raise bad(f"min {lo} is above max {hi}", "swap them")
    elif kind == "footprint":
        box = ("ra_min", "ra_max", "dec_min", "dec_max")
        given = [k for k in box if k in rule]
        if "circle" in rule:
            c = rule["circle"]
            if given:
                raise bad("give a circle or a box, not both", f"e.g. {example}")
            if not (isinstance(c, list) and len(c) == 3 and all(_number(x) for x in c)):
                raise bad("circle must be [ra, dec, radius] in degrees", f"e.g. {example}")
            if not (-90 <= c[1] <= 90 and 0 < c[2] <= 180):
                raise bad(
                    "the circle's dec must be in [-90, 90] and its radius in (0, 180]", f"e.g. {example}"
                )
        else:
            if len(given) != 4:
                missing = [k for k in box if k not in rule]
                raise bad(f"footprint needs {', '.join(missing)} (or a circle)", f"e.g. {example}")
            for k in box:
                if not _number(rule[k]):
                    raise bad(f"{k} must be a finite number of degrees, not {rule[k]!r}", f"e.g. {example}")
            if rule["ra_min"] > rule["ra_max"] or rule["dec_min"] > rule["dec_max"]:
                raise bad("a minimum is above its maximum", "swap them")
    elif kind == "band_coverage":
        bands = rule["bands"]
        if not (isinstance(bands, list) and bands and all(isinstance(b, str) and b.strip() for b in bands)):
            raise bad("bands must be a non-empty list of band names", f"e.g. {example}")
        if "{band}" not in rule["column"]:
            raise bad("column must contain {band}, where each band's name goes", f"e.g. {example}")
        try:
            rule["column"].format(band="g")
        except (KeyError, IndexError, ValueError) as exc:
            raise bad(
                f"column {rule['column']!r} is not a template ({exc})", "use {band} and no other braces"
            ) from None
        fraction = rule.get("min_fraction", 0.5)
        if not (_number(fraction) and 0 <= fraction <= 1):
            raise bad(f"min_fraction must be a number from 0 to 1, not {fraction!r}", f"e.g. {example}")
    return dict(rule)


def check_rules(
    item: str,
    source: CatalogSource | None,
    rules: Sequence[Mapping[str, Any]],
    columns: Mapping[str, str] | None = None,
) -> list[CheckResult]:
    """Run content rules: row_count, range, finite, not_null, unique, footprint, band_coverage.

    A rule that cannot run as written (`validate_rule`), or that names a column the catalog does not have
    or one of the wrong kind, is a `RuleError` naming the item, the rule and the fix.  With ``source``
    None, the rules are only checked — as written, and against ``columns`` (name → SQL or Felis type)
    if given — and nothing is run: what a release plan or the regression corpus does when it takes a
    rule in, so that a malformed rule is refused then, not an error in every later check.
    """
    where = f"Item {item!r}: " if item else ""
    for rule in rules:
        kind = rule.get("rule") if isinstance(rule, Mapping) else None
        if isinstance(kind, str) and kind not in _RULE_KEYS:
            raise RuleError(
                f"{where}unknown rule {kind!r}."
                + did_you_mean(kind, RULES, "rules")
                + f" — use one of {', '.join(RULES)}."
            )
        try:
            validate_rule(rule)
        except RuleError as exc:
            raise RuleError(f"{where}{exc}") from None
    have = source.columns() if source is not None and rules else columns
    for rule in rules:
        if have is None:
            break
        kind = rule["rule"]
        for c in _rule_columns(rule):
            if c not in have:
                raise RuleError(
                    f"{where}rule {kind!r} names column {c!r}, which the catalog does not have."
                    + did_you_mean(c, have)
                    + " — name one of its columns."
                )
            # Declared types (a Felis table's) must be numbers; a catalog's own text column of numbers
            # still compares, as DuckDB casts it (and names the value when it cannot).
            family = sql_family(have[c]) or _FELIS.get(have[c], (None, 0))[0]
            if source is None and kind in _NUMERIC_RULES and family not in (None, "int", "float"):
                raise RuleError(
                    f"{where}rule {kind!r} needs a number column, and {c!r} is {have[c]}"
                    " — name a numeric column, or use not_null or unique for this one."
                )
    if source is None:
        return []
    return [
        _timed(item, _label(rule), lambda f=_RULES[rule["rule"]], r=rule, s=source: f(item, s, r))
        for rule in rules
    ]


def _rule_columns(rule: Mapping[str, Any]) -> list[str]:
    cols = list(rule.get("columns") or [])
    for key in ("column", "ra", "dec"):
        if rule.get(key):
            cols.append(str(rule[key]))
    if rule.get("rule") == "footprint":
        cols = [str(rule.get("ra", "coord_ra")), str(rule.get("dec", "coord_dec"))]
    if rule.get("rule") == "band_coverage":
        cols = [str(rule["column"]).format(band=b) for b in rule.get("bands", [])]
    return cols


def _label(rule: Mapping[str, Any]) -> str:
    kind = rule["rule"]
    target = rule.get("column") or ",".join(rule.get("columns") or []) or ""
    return f"{kind} {target}".strip()


def _row_count(item: str, s: CatalogSource, r: Mapping[str, Any]) -> CheckResult:
    (n,) = s.one(f"SELECT count(*) FROM {s.sql}")
    lo, hi = r.get("min"), r.get("max")
    ok = (lo is None or n >= lo) and (hi is None or n <= hi)
    return CheckResult(item, _label(r), PASS if ok else FAIL, value=int(n), expected=f"[{lo}, {hi}]")


def _range(item: str, s: CatalogSource, r: Mapping[str, Any]) -> CheckResult:
    c = _quote(r["column"])
    conds = ([f"{c} < {float(r['min'])}"] if r.get("min") is not None else []) + (
        [f"{c} > {float(r['max'])}"] if r.get("max") is not None else []
    )
    where = " OR ".join(conds) or "false"
    (bad,) = s.one(f"SELECT count(*) FROM {s.sql} WHERE {where}")
    sample = (
        [row[0] for row in s.rows(f"SELECT {c} FROM {s.sql} WHERE {where} LIMIT {SAMPLE}")] if bad else []
    )
    return CheckResult(
        item,
        _label(r),
        FAIL if bad else PASS,
        value=f"{bad} outside",
        expected=f"[{r.get('min')}, {r.get('max')}]",
        sample=sample,
    )


def _finite(item: str, s: CatalogSource, r: Mapping[str, Any]) -> CheckResult:
    cols = list(r["columns"])
    terms = [f"count(*) FILTER (WHERE isnan({_quote(c)}) OR isinf({_quote(c)}))" for c in cols]
    counts = s.one(f"SELECT {', '.join(terms)} FROM {s.sql}")
    bad = {c: int(n) for c, n in zip(cols, counts) if n}
    return CheckResult(
        item,
        _label(r),
        FAIL if bad else PASS,
        value=bad or "all finite",
        expected="no NaN or inf",
        message=", ".join(f"{c}: {n}" for c, n in bad.items()),
    )


def _not_null_rule(item: str, s: CatalogSource, r: Mapping[str, Any]) -> CheckResult:
    cols = list(r["columns"])
    counts = s.one(
        f"SELECT {', '.join(f'count(*) FILTER (WHERE {_quote(c)} IS NULL)' for c in cols)} FROM {s.sql}"
    )
    bad = {c: int(n) for c, n in zip(cols, counts) if n}
    return CheckResult(item, _label(r), FAIL if bad else PASS, value=bad or "no nulls", expected="no nulls")


def _unique_rule(item: str, s: CatalogSource, r: Mapping[str, Any]) -> CheckResult:
    return _unique(item, _label(r), s, list(r["columns"]), s.columns())


def _footprint(item: str, s: CatalogSource, r: Mapping[str, Any]) -> CheckResult:
    ra, dec = _quote(r.get("ra", "coord_ra")), _quote(r.get("dec", "coord_dec"))
    finite = f"NOT isnan({ra}) AND NOT isnan({dec})"
    if "circle" in r:
        ra0, dec0, radius = (float(x) for x in r["circle"])
        inside = (
            f"degrees(acos(least(1, sin(radians({dec}))*sin(radians({dec0})) + cos(radians({dec}))*cos(radians({dec0}))"
            f"*cos(radians({ra} - {ra0}))))) <= {radius}"
        )
        expected = f"within {radius}° of ({ra0}, {dec0})"
    else:
        box = {k: float(r[k]) for k in ("ra_min", "ra_max", "dec_min", "dec_max")}
        inside = f"{ra} BETWEEN {box['ra_min']} AND {box['ra_max']} AND {dec} BETWEEN {box['dec_min']} AND {box['dec_max']}"
        expected = f"RA [{box['ra_min']}, {box['ra_max']}], Dec [{box['dec_min']}, {box['dec_max']}]"
    # A row without a finite position is not inside the footprint either.
    outside = f"NOT coalesce({finite} AND {inside}, false)"
    (bad,) = s.one(f"SELECT count(*) FROM {s.sql} WHERE {outside}")
    sample = (
        [list(x) for x in s.rows(f"SELECT {ra}, {dec} FROM {s.sql} WHERE {outside} LIMIT {SAMPLE}")]
        if bad
        else []
    )
    return CheckResult(
        item, _label(r), FAIL if bad else PASS, value=f"{bad} outside", expected=expected, sample=sample
    )


def _band_coverage(item: str, s: CatalogSource, r: Mapping[str, Any]) -> CheckResult:
    bands = list(r["bands"])
    cols = [str(r["column"]).format(band=b) for b in bands]
    terms = [f"avg(CASE WHEN {_quote(c)} IS NULL OR isnan({_quote(c)}) THEN 0 ELSE 1 END)" for c in cols]
    fractions = s.one(f"SELECT {', '.join(terms)} FROM {s.sql}")
    need = float(r.get("min_fraction", 0.5))
    low = {b: round(float(f or 0), 4) for b, f in zip(bands, fractions) if (f or 0) < need}
    return CheckResult(
        item,
        f"band_coverage {r['column']}",
        FAIL if low else PASS,
        value={b: round(float(f or 0), 4) for b, f in zip(bands, fractions)},
        expected=f"≥ {need} per band",
        message=f"too little coverage in {sorted(low)}" if low else "",
    )


_RULES = {
    "row_count": _row_count,
    "range": _range,
    "finite": _finite,
    "not_null": _not_null_rule,
    "unique": _unique_rule,
    "footprint": _footprint,
    "band_coverage": _band_coverage,
}


# --- diff ------------------------------------------------------------------------------------------------------


def schema_diff(table: Any, have: Mapping[str, str]) -> dict[str, Any]:
    """Both directions: schema columns the data lacks, data columns the schema lacks, and type mismatches."""
    want = {c.name: c for c in table.columns}
    mismatched = []
    for name, col in want.items():
        if name in have:
            status, why = compatibility(col.datatype.value, have[name])
            if status != PASS:
                mismatched.append(
                    {
                        "column": name,
                        "schema": col.datatype.value,
                        "data": have[name],
                        "status": status,
                        "why": why,
                    }
                )
    return {
        "table": table.name,
        "missing_in_data": [c for c in want if c not in have],
        "not_in_schema": [c for c in have if c not in want],
        "type_mismatches": mismatched,
    }


def postgres_columns(url: str, table: str, namespace: str | None = None) -> dict[str, str]:
    """Column name → type of a live PostgreSQL table."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sqlalchemy.text(
                    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = :t"
                    + (" AND table_schema = :s" if namespace else "")
                    + " ORDER BY ordinal_position"
                ),
                {"t": table, "s": namespace} if namespace else {"t": table},
            ).all()
    finally:
        engine.dispose()
    if not rows:
        raise PorterError(
            f"No table {table!r} in {url}" + (f" (schema {namespace})" if namespace else "") + "."
        )
    return {r[0]: r[1] for r in rows}
