"""Does a catalog conform to its Felis table?  Checked with DuckDB over Parquet, streaming.

Each check is one aggregate SQL query over ``read_parquet(...)``, so a
catalog of any size is scanned, never loaded: columns present, types
compatible, non-null columns without nulls (or NaN), primary-key
uniqueness, foreign keys resolved against another catalog, and the units
the files declare (Parquet field metadata ``unit``, or astropy's header)
against the schema's ``ivoa:unit``.  Content rules from the release plan
(row counts, value ranges, finite values, sky footprint, per-band coverage)
run the same way, over the whole catalog or per value of a ``group_by``
column (one ``GROUP BY`` query), and a row count may be compared with
another catalog's or with a count of datasets in the butler
(``expected_rows``, given by the release checks).
"""

from __future__ import annotations

import base64
import errno
import glob as globmod
import math
import os
import stat
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import PorterError, did_you_mean
from ._felis import _FELIS, column_name, compatibility, primary_key, sql_family
from ._postgres_source import is_postgres_location, snapshot_table
from ._result import ERROR, FAIL, PASS, WARN, CheckResult

__all__ = [
    "RULES",
    "CatalogFileError",
    "CatalogSource",
    "ExpectedRows",
    "RuleError",
    "check_rules",
    "conformance",
    "same_unit",
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
    ``drift`` is true when every file reads and the only problem is that they disagree on their columns
    (a name missing or of another type in some of them): a defect of the delivery that was found, which
    release checks report as a ``fail`` rather than as a check that could not run.
    """

    def __init__(self, location: str, problems: list[dict[str, str]]):
        self.location = location
        self.problems = problems
        self.drift = bool(problems) and all(p["problem"].startswith(_DRIFT) for p in problems)
        shown = "; ".join(f"{p['file']} {p['problem']}" for p in problems[:SAMPLE])
        more = f"; and {len(problems) - SAMPLE} more" if len(problems) > SAMPLE else ""
        fixes = list(dict.fromkeys(_fix(p["problem"]) for p in problems))
        n = len(problems)
        super().__init__(
            f"Catalog {location}: {n} file{'s' if n > 1 else ''} cannot be used: {shown}{more} — "
            + "; ".join(fixes)
            + "."
        )


_DRIFT = "has another schema than "


def _fix(problem: str) -> str:
    """What to do about a damaged catalog file (`CatalogFileError`)."""
    if "permission denied" in problem:
        return "make the file readable by whoever runs the checks"
    if "broken link" in problem or "link loop" in problem:
        return "point the link at the file, or remove it"
    if "link back to" in problem:
        return "remove the link (or point it at a directory outside the catalog's)"
    if "not a regular file" in problem:
        return "replace it with the Parquet file itself, or remove it"
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
            loops = directory_loops(path) if path.is_dir() else []
            if loops:  # the glob would follow them round and round, reading the same files again and again
                self._failure = CatalogFileError(location, loops)
            elif not globmod.glob(pattern, recursive=True):
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

    def units(self) -> list[tuple[dict[str, str], list[str]]]:
        """The units the files declare: each distinct column → unit mapping, with the files that declare it
        (files without units, and empty units, left out).

        A unit is read from the Arrow schema pyarrow stores in the file (field metadata ``unit``, as
        Rubin's butler and other Arrow writers set it) or else from astropy's ``table_meta_yaml`` header.
        One query over every file's key-value metadata (the footers only), grouped so that a schema shared
        by many files crosses into Python, and is decoded, once.
        """
        rows = self.rows(
            f"SELECT decode(key), value, list(file_name ORDER BY file_name) "
            f"FROM parquet_kv_metadata({_literal(self._pattern)}) "
            "WHERE decode(key) IN ('ARROW:schema', 'table_meta_yaml') GROUP BY ALL"
        )
        arrow: dict[str, dict[str, str]] = {}
        astropy: dict[str, dict[str, str]] = {}
        for key, value, files in rows:
            units = _arrow_units(bytes(value)) if key == "ARROW:schema" else _astropy_units(bytes(value))
            for f in files:
                (arrow if key == "ARROW:schema" else astropy)[str(f)] = units
        out: dict[int, tuple[dict[str, str], list[str]]] = {}
        for f in sorted(arrow.keys() | astropy.keys()):
            units = arrow.get(f) or astropy.get(f) or {}
            if units:
                out.setdefault(id(units), (units, []))[1].append(f)
        return list(out.values())


@lru_cache(maxsize=64)
def _arrow_units(serialized: bytes) -> dict[str, str]:
    """Column → unit from the base64 Arrow schema pyarrow stores in a Parquet file (``ARROW:schema``)."""
    import pyarrow as pa

    try:
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(serialized)))
    except (pa.ArrowException, ValueError):
        return {}  # not ours to judge here: the file's data is read and checked by every other query
    out = {}
    for f in schema:
        unit = (f.metadata or {}).get(b"unit")
        if unit and unit.strip():
            out[f.name] = unit.decode("utf-8", "replace").strip()
    return out


@lru_cache(maxsize=64)
def _astropy_units(header: bytes) -> dict[str, str]:
    """Column → unit from astropy's ``table_meta_yaml`` (its Parquet writer's header, as in ECSV)."""
    from astropy.table.meta import get_header_from_yaml

    try:
        meta = get_header_from_yaml(header.decode("utf-8").splitlines())
    except Exception:  # a header astropy itself cannot read: no units to compare
        return {}
    return {
        str(c["name"]): str(c["unit"]).strip()
        for c in meta.get("datatype", [])
        if isinstance(c, Mapping) and c.get("name") and c.get("unit") and str(c["unit"]).strip()
    }


@lru_cache(maxsize=1024)
def _parsed_unit(text: str) -> Any:
    """An astropy unit for a unit string (generic, VOUnit, CDS or FITS syntax); the string itself if none reads it."""
    import astropy.units as u

    for fmt in (None, "vounit", "cds", "fits"):
        try:
            unit = u.Unit(text, format=fmt) if fmt else u.Unit(text)
        except (ValueError, TypeError):
            continue
        if not isinstance(unit, u.UnrecognizedUnit):
            return unit
    return text.strip()


def same_unit(a: str, b: str) -> bool:
    """Whether two unit strings mean the same unit (``nJy`` and ``nanojansky`` do; ``mag`` and ``nJy`` do not)."""
    ua, ub = _parsed_unit(a), _parsed_unit(b)
    if isinstance(ua, str) or isinstance(ub, str):
        return isinstance(ua, str) and isinstance(ub, str) and ua == ub
    try:
        return bool(ua == ub)
    except (ValueError, TypeError):
        return False


def directory_loops(root: Path) -> list[dict[str, str]]:
    """Links below ``root`` to a directory above them (or to one already seen): each is a loop for a
    recursive glob, which would read the same files dozens of times over."""
    out = []
    seen = {root.resolve()}
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        here = Path(dirpath)
        for d in list(dirnames):
            real = (here / d).resolve()
            if real in seen or here.resolve().is_relative_to(real):
                out.append({"file": str(here / d), "problem": f"is a link back to {real} (a loop)"})
                dirnames.remove(d)
            else:
                seen.add(real)
    return out


def _shallow(path: Path) -> str | None:
    """What is wrong with a local file that DuckDB might pass over in silence: a dangling link, no read
    permission, no bytes; None otherwise (directories too: no one reads them)."""
    try:
        if path.is_symlink():
            try:
                path.stat()
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    return f"is a symbolic-link loop (to {os.readlink(path)})"
                return f"is a broken link (to {os.readlink(path)})"
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            return None
        if not stat.S_ISREG(mode):  # opening a FIFO waits for a writer that never comes
            return "is not a regular file (a FIFO, socket or device)"
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
        out.append({"file": file, "problem": f"{_DRIFT}{example}: {what}"})
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
    """Columns, types, nullability, primary key, foreign keys and units of ``source`` against Felis ``table``.

    The "units and UCDs" result fails when a file declares a unit other than the schema's for a column;
    columns the schema itself leaves without a UCD or unit are named in its message, as information about
    the schema: they are not the delivery's fault, and would otherwise warn on every delivery.
    """
    have = source.columns()
    want = {c.name: c for c in table.columns}
    out = [_timed(item, "columns", lambda: _columns(item, have, want))]
    out.append(_timed(item, "types", lambda: _types(item, have, want)))
    out.append(_timed(item, "not-null", lambda: _not_null(item, source, have, want, primary_key(table))))
    pk = primary_key(table)
    if pk:
        out.append(
            _timed(item, "primary key", lambda: _unique(item, "primary key", source, pk, have, primary=True))
        )
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
    out.append(_timed(item, "units and UCDs", lambda: _units(item, source, table)))
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
    item: str,
    check: str,
    source: CatalogSource,
    cols: Sequence[str],
    have: Mapping[str, str],
    primary: bool = False,
) -> CheckResult:
    """No two rows share the key ``cols``; for a ``primary`` key, no row has a null in it either."""
    missing = [c for c in cols if c not in have]
    if missing:
        return CheckResult(item, check, FAIL, message=f"key column(s) {missing} missing")
    key = ", ".join(_quote(c) for c in cols)
    # As in SQL, a key with a null in it equals no other: such rows are not duplicates (a primary key
    # fails on them by name), and counting them as duplicates would report ones no sample shows.
    keyed = " AND ".join(f"{_quote(c)} IS NOT NULL" for c in cols)
    rows, total, distinct = source.one(
        f"SELECT count(*), count(*) FILTER (WHERE {keyed}), count(DISTINCT ({key})) FILTER (WHERE {keyed}) "
        f"FROM {source.sql}"
    )
    dupes = int(total) - int(distinct)
    nulls = int(rows) - int(total)
    sample = []
    if dupes:
        sample = [
            list(r)
            for r in source.rows(
                f"SELECT {key}, count(*) AS n FROM {source.sql} WHERE {keyed} GROUP BY {key} HAVING n > 1 "
                f"ORDER BY n DESC LIMIT {SAMPLE}"
            )
        ]
    message = f"{len(sample)}+ duplicated keys" if dupes else ""
    if nulls:
        what = "a primary key cannot be null" if primary else "not compared"
        message = "; ".join(filter(None, [message, f"{nulls} rows with a null in the key ({what})"]))
    return CheckResult(
        item,
        check,
        FAIL if dupes or (primary and nulls) else PASS,
        value=f"{dupes} duplicated rows",
        expected=f"({key}) unique over {total} rows",
        message=message,
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


def _units(item: str, source: CatalogSource, table: Any) -> CheckResult:
    """The files' units against the schema's ``ivoa:unit`` (a fail); the schema's own gaps (information)."""
    no_unit = [c.name for c in table.columns if (c.ivoa_ucd or "").startswith(_UNIT_UCDS) and not c.ivoa_unit]
    no_ucd = [c.name for c in table.columns if not c.ivoa_ucd]
    schema_units = {c.name: str(c.ivoa_unit).strip() for c in table.columns if c.ivoa_unit}
    declared = source.units()
    compared: set[str] = set()
    differ: dict[tuple[str, str, str], list[str]] = {}  # (column, schema's, file's) → files
    undeclared: set[str] = set()  # a unit in the files where the schema has none
    for units, files in declared:
        for column, unit in units.items():
            want = schema_units.get(column)
            if want is None:
                undeclared.add(column)
                continue
            compared.add(column)
            if not same_unit(unit, want):
                differ.setdefault((column, want, unit), []).extend(files)
    bad: list[dict[str, Any]] = [
        {"column": c, "schema": schema_unit, "data": unit, "files": len(fs), "file": sorted(fs)[0]}
        for (c, schema_unit, unit), fs in sorted(differ.items())
    ]
    n_bad = len({b["column"] for b in bad})
    gaps = []
    if no_ucd:
        gaps.append(f"no UCD for {len(no_ucd)} of {len(table.columns)} columns")
    if no_unit:
        gaps.append(
            f"no unit for {no_unit[:SAMPLE]}"
            + (f" and {len(no_unit) - SAMPLE} more" if len(no_unit) > SAMPLE else "")
        )
    if undeclared:
        gaps.append(f"no unit for {len(undeclared)} columns the files give one")
    mismatches = "; ".join(
        f"{b['column']} is in {b['data']!r} in {Path(b['file']).name}"
        + (f" and {b['files'] - 1} more files" if b["files"] > 1 else "")
        + f", the schema says {b['schema']!r}"
        for b in bad[:SAMPLE]
    )
    info = f"the schema {table.name} itself declares " + ", ".join(gaps) if gaps else ""
    return CheckResult(
        item,
        "units and UCDs",
        FAIL if bad else PASS,
        value=f"{n_bad} of {len(compared)} columns differ" if declared else "no units in the files",
        expected="the files' units as the schema's ivoa:unit",
        message="; ".join(m for m in (mismatches, info) if m),
        sample=bad[:SAMPLE],
    )


# --- content rules ------------------------------------------------------------------------------------------


RULES = ("row_count", "range", "finite", "not_null", "unique", "footprint", "band_coverage")
"""The content rules a plan or the regression corpus may name."""

_RULE_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # rule: (every key it takes, the keys it needs)
    "row_count": (("min", "max", "group_by", "equals_item", "per_dataset"), ()),
    "range": (("column", "min", "max", "group_by"), ("column",)),
    "finite": (("columns", "group_by"), ("columns",)),
    "not_null": (("columns", "group_by"), ("columns",)),
    "unique": (("columns",), ("columns",)),
    "footprint": (("ra", "dec", "circle", "ra_min", "ra_max", "dec_min", "dec_max", "group_by"), ()),
    "band_coverage": (("column", "bands", "min_fraction", "group_by"), ("column", "bands")),
}
_UNGROUPED = {
    # rule: (why group_by does not apply, what to write instead)
    "unique": (
        "uniqueness within each group is uniqueness of the group column and the others together",
        "add the column to columns instead, e.g. {rule: unique, columns: [tract, objectId]}",
    ),
}
_PER_DATASET_KEYS = ("dataset_type", "dimensions", "collections", "where")
_EXAMPLES = {
    "row_count": "{rule: row_count, min: 1000}, {rule: row_count, min: 1, group_by: tract}, "
    "{rule: row_count, equals_item: source-table} or "
    "{rule: row_count, per_dataset: {dataset_type: calexp, dimensions: [visit]}}",
    "range": "{rule: range, column: psfFlux, min: 0}",
    "finite": "{rule: finite, columns: [coord_ra, coord_dec]}",
    "not_null": "{rule: not_null, columns: [objectId]}",
    "unique": "{rule: unique, columns: [objectId]}",
    "footprint": "{rule: footprint, ra_min: 149, ra_max: 151, dec_min: 1, dec_max: 3} "
    "or {rule: footprint, circle: [150, 2, 1.5]}",
    "band_coverage": "{rule: band_coverage, column: '{band}_psfFlux', bands: [g, r, i], min_fraction: 0.5}",
}
_MEANINGS = {
    # rule: what it checks, what passes and what fails (the Notes of docs/release-plan.md's rules)
    "row_count": "The catalog's number of rows, against min, max or both, or against the exact count that "
    "equals_item or per_dataset gives (one of these is needed): it fails outside the bounds, or when the "
    "counts differ. With group_by, each group's rows must be within [min, max], and a catalog without rows "
    "fails when min is above 0.",
    "range": "Every value of column within [min, max] (either bound may be left out): it fails with the "
    "number of rows outside and a sample of their values. Nulls pass (not_null catches them); for NaN, "
    "use finite.",
    "finite": "No NaN or infinity in any of the columns: it fails with each column's count. Nulls pass "
    "(not_null catches them).",
    "not_null": "No null in any of the columns: it fails with each column's count. NaN is a value here "
    "(finite catches it).",
    "unique": "No two rows with the same values of the columns, taken together: it fails with the number of "
    "duplicated rows and a sample of the repeated keys.",
    "footprint": "Every row's position (the columns ra and dec, by default coord_ra and coord_dec, in degrees) "
    "inside a box (all four of ra_min, ra_max, dec_min, dec_max) or a circle [RA, Dec, radius] (one of the "
    "two is needed): it fails with the number of rows outside and a sample. A row without a finite position "
    "counts as outside.",
    "band_coverage": "For each band, the fraction of rows with a value (neither null nor NaN) in column, its "
    "{band} replaced by the band's name, must be at least min_fraction (default 0.5): it fails naming the "
    "bands below it.",
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

    ``group_by: COLUMN`` evaluates row_count, range, finite, not_null, footprint and band_coverage per
    value of that column (unique refuses it, naming what to write instead).  row_count compares the
    catalog's rows with ``min``/``max``, or with exactly one of ``equals_item: ITEM`` (another catalog
    item of the plan) and ``per_dataset: {dataset_type, dimensions, collections, where}`` (the number of
    distinct data IDs over ``dimensions`` of that dataset type's datasets in the butler).
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
    if "group_by" in rule and kind in _UNGROUPED:
        why, instead = _UNGROUPED[kind]
        raise bad(f"{kind} takes no group_by: {why}", instead)
    if "group_by" in rule and not (isinstance(rule["group_by"], str) and rule["group_by"].strip()):
        raise bad(f"group_by must be a column name, not {rule['group_by']!r}", f"e.g. {example}")
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
    if kind == "row_count" and ("equals_item" in rule or "per_dataset" in rule):
        _validate_row_source(rule, bad, example)
    elif kind in ("range", "row_count"):
        lo, hi = rule.get("min"), rule.get("max")
        if lo is None and hi is None:
            what = "min, max or both" + (", or equals_item or per_dataset" if kind == "row_count" else "")
            raise bad(f"{kind} needs {what}", f"e.g. {example}")
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


def _validate_row_source(rule: Mapping[str, Any], bad: Callable[[str, str], RuleError], example: str) -> None:
    """A row_count's ``equals_item`` or ``per_dataset``: one of them, alone, well formed."""
    given = [k for k in ("equals_item", "per_dataset", "min", "max", "group_by") if k in rule]
    if len(given) > 1:
        raise bad(
            f"row_count takes one of min/max, equals_item and per_dataset, and no group_by with the last "
            f"two (it has {', '.join(given)})",
            "keep one: the expected count is that of the whole table",
        )
    if "equals_item" in rule:
        name = rule["equals_item"]
        if not (isinstance(name, str) and name.strip()):
            raise bad(f"equals_item must be the name of a catalog item, not {name!r}", f"e.g. {example}")
        return
    spec = rule["per_dataset"]
    shape = "per_dataset: {dataset_type: calexp, dimensions: [visit], collections: [...], where: '...'}"
    if not isinstance(spec, Mapping):
        raise bad(f"per_dataset must be a mapping, not {spec!r}", f"write {shape}")
    for key in spec:
        if key not in _PER_DATASET_KEYS:
            raise bad(
                f"per_dataset takes no {key!r}." + did_you_mean(str(key), _PER_DATASET_KEYS),
                f"it takes {', '.join(_PER_DATASET_KEYS)}: {shape}",
            )
    if not (isinstance(spec.get("dataset_type"), str) and spec["dataset_type"].strip()):
        raise bad("per_dataset needs dataset_type, the name of a dataset type", f"write {shape}")
    for key in ("dimensions", "collections"):
        v = spec.get(key)
        if isinstance(v, str) and key == "collections":
            continue  # one collection
        if v is not None and not (
            isinstance(v, list) and v and all(isinstance(x, str) and x.strip() for x in v)
        ):
            raise bad(f"per_dataset's {key} must be a non-empty list of names, not {v!r}", f"write {shape}")
    if not isinstance(spec.get("where", ""), str):
        raise bad(f"per_dataset's where must be a where expression, not {spec['where']!r}", f"write {shape}")


ExpectedRows = Callable[[Mapping[str, Any]], tuple[int, str]]
"""What a row_count rule with ``equals_item`` or ``per_dataset`` compares with: given the rule, the
expected number of rows and where it comes from ("rows of catalog item 'source'").  The release
checks give one (they know the plan and the butler); without it such a rule is an error result."""


def check_rules(
    item: str,
    source: CatalogSource | None,
    rules: Sequence[Mapping[str, Any]],
    columns: Mapping[str, str] | None = None,
    expected_rows: ExpectedRows | None = None,
) -> list[CheckResult]:
    """Run content rules: row_count, range, finite, not_null, unique, footprint, band_coverage.

    A rule with ``group_by`` is one ``GROUP BY`` query: it fails naming the groups that fail (value:
    how many of how many; sample: each failing group with its figures).  A row_count with
    ``equals_item`` or ``per_dataset`` asks ``expected_rows`` for the count to compare with.

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
    blocked: dict[int, str] = {}  # rule index → why it cannot run on this catalog's types
    for i, rule in enumerate(rules):
        if have is None:
            break
        kind = rule["rule"]
        group = rule.get("group_by")
        if group is not None and group not in have:
            raise RuleError(
                f"{where}rule {kind!r} groups by column {group!r}, which the catalog does not have."
                + did_you_mean(group, have)
                + " — name one of its columns."
            )
        for c in _rule_columns(rule):
            if c not in have:
                raise RuleError(
                    f"{where}rule {kind!r} names column {c!r}, which the catalog does not have."
                    + did_you_mean(c, have)
                    + " — name one of its columns."
                )
            family = sql_family(have[c]) or _FELIS.get(have[c], (None, 0))[0]
            if kind in _NUMERIC_RULES and family not in (None, "int", "float"):
                if source is None:  # a declared (Felis) type: the rule is wrong as written
                    raise RuleError(
                        f"{where}rule {kind!r} needs a number column, and {c!r} is {have[c]}"
                        " — name a numeric column, or use not_null or unique for this one."
                    )
                # The data's type: the catalog is wrong, not the rule.  One clear result, not the
                # engine's binder error from comparing text with numbers.
                blocked.setdefault(
                    i,
                    f"not run: column {c!r} is {have[c]} in the catalog, and {kind} compares numbers"
                    " — write the column with a numeric type (the types check lists every mismatch).",
                )
    if source is None:
        return []

    def run(rule: Mapping[str, Any], s: CatalogSource) -> CheckResult:
        if rule["rule"] == "row_count" and ("equals_item" in rule or "per_dataset" in rule):
            return _row_count_against(item, s, rule, expected_rows)
        if rule.get("group_by") is not None:
            return _GROUPED[rule["rule"]](item, s, rule)
        return _RULES[rule["rule"]](item, s, rule)

    return [
        CheckResult(item, _label(rule), ERROR, message=blocked[i])
        if i in blocked
        else _timed(item, _label(rule), lambda r=rule, s=source: run(r, s))
        for i, rule in enumerate(rules)
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
    if kind == "row_count" and rule.get("equals_item"):
        target = f"= {rule['equals_item']}"
    elif kind == "row_count" and isinstance(rule.get("per_dataset"), Mapping):
        spec = rule["per_dataset"]
        dims = ",".join(spec.get("dimensions") or [])
        target = f"per {dims + ' of ' if dims else ''}{spec.get('dataset_type')}" + (
            f" where {spec['where']}" if spec.get("where") else ""
        )
    by = f" by {rule['group_by']}" if rule.get("group_by") else ""
    return f"{kind} {target}".strip() + by


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
    outside, expected = _outside_footprint(r, ra, dec)
    (bad,) = s.one(f"SELECT count(*) FROM {s.sql} WHERE {outside}")
    sample = (
        [list(x) for x in s.rows(f"SELECT {ra}, {dec} FROM {s.sql} WHERE {outside} LIMIT {SAMPLE}")]
        if bad
        else []
    )
    return CheckResult(
        item, _label(r), FAIL if bad else PASS, value=f"{bad} outside", expected=expected, sample=sample
    )


def _outside_footprint(r: Mapping[str, Any], ra: str, dec: str) -> tuple[str, str]:
    """The SQL condition of a row outside the rule's footprint (no finite position is outside too), and
    the footprint in words."""
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
    return f"NOT coalesce({finite} AND {inside}, false)", expected


def _band_coverage(item: str, s: CatalogSource, r: Mapping[str, Any]) -> CheckResult:
    bands = list(r["bands"])
    cols = [str(r["column"]).format(band=b) for b in bands]
    terms = [f"avg(CASE WHEN {_quote(c)} IS NULL OR isnan({_quote(c)}) THEN 0 ELSE 1 END)" for c in cols]
    fractions = s.one(f"SELECT {', '.join(terms)} FROM {s.sql}")
    need = float(r.get("min_fraction", 0.5))
    low = {b: round(float(f or 0), 4) for b, f in zip(bands, fractions) if (f or 0) < need}
    return CheckResult(
        item,
        _label(r),
        FAIL if low else PASS,
        value={b: round(float(f or 0), 4) for b, f in zip(bands, fractions)},
        expected=f"≥ {need} per band",
        message=f"too little coverage in {sorted(low)}" if low else "",
    )


def _row_count_against(
    item: str, s: CatalogSource, r: Mapping[str, Any], expected_rows: ExpectedRows | None
) -> CheckResult:
    """row_count with ``equals_item`` or ``per_dataset``: exactly the count ``expected_rows`` gives."""
    if expected_rows is None:
        raise RuleError(
            f"Item {item!r}: rule {_show_rule(r)} compares with another catalog item or with the butler, "
            "which only a release check knows — run it with porter release check"
        )
    (n,) = s.one(f"SELECT count(*) FROM {s.sql}")
    want, origin = expected_rows(r)
    n, want = int(n), int(want)
    return CheckResult(
        item,
        _label(r),
        PASS if n == want else FAIL,
        value=n,
        expected=f"{want} ({origin})",
        message="" if n == want else f"{abs(n - want)} rows {'more' if n > want else 'fewer'} than {origin}",
    )


def _plain(value: Any) -> Any:
    """A value from DuckDB as JSON can hold it (results are recorded in the audit log)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else str(value)
    return str(value)


def _grouped(
    item: str,
    s: CatalogSource,
    r: Mapping[str, Any],
    figures: Sequence[tuple[str, str]],
    failing: str,
    worst_first: str,
    expected: str,
    why: Callable[[dict[str, Any]], str],
    empty_fails: bool = False,
) -> CheckResult:
    """A rule per value of ``r["group_by"]``: one GROUP BY query over the catalog.

    ``figures`` are (name, aggregate SQL) computed per group and named ``_f0``, ``_f1`` … in ``failing``
    (the SQL condition of a failing group) and ``worst_first`` (the order failing groups are shown in).
    The query returns the failing groups (at most `SAMPLE`), with how many groups there are and fail.
    """
    g = str(r["group_by"])
    aggs = ", ".join(f"{sql} AS _f{i}" for i, (_, sql) in enumerate(figures))
    names = [name for name, _ in figures]
    per_group = f"SELECT {_quote(g)} AS _group, {aggs} FROM {s.sql} GROUP BY {_quote(g)}"
    query = (
        f"SELECT _group, {', '.join(f'_f{i}' for i in range(len(figures)))}, _bad, count(*) OVER (), "
        "sum(CASE WHEN _bad THEN 1 ELSE 0 END) OVER () "
        f"FROM (SELECT *, coalesce({failing}, true) AS _bad FROM ({per_group})) "
        f"ORDER BY _bad DESC, {worst_first}, _group NULLS FIRST LIMIT {SAMPLE}"
    )
    rows = s.rows(query)
    total = int(rows[0][-2]) if rows else 0
    n_bad = int(rows[0][-1] or 0) if rows else 0
    sample = [
        {g: _plain(row[0]), **{n: _plain(v) for n, v in zip(names, row[1 : 1 + len(names)])}}
        for row in rows
        if row[1 + len(names)]
    ]
    if not rows and empty_fails:
        return CheckResult(
            item,
            _label(r),
            FAIL,
            value=f"0/0 {g} groups",
            expected=expected,
            message=f"the catalog has no rows, so no {g} at all",
        )
    shown = "; ".join(f"{g} {entry[g]}: {why(entry)}" for entry in sample)
    more = f"; and {n_bad - len(sample)} more" if n_bad > len(sample) else ""
    return CheckResult(
        item,
        _label(r),
        FAIL if n_bad else PASS,
        value=f"{n_bad}/{total} {g} groups fail",
        expected=expected,
        message=f"{n_bad} of {total} {g} groups fail: {shown}{more}" if n_bad else "",
        sample=sample,
    )


def _row_count_by(item: str, s: CatalogSource, r: Mapping[str, Any]) -> CheckResult:
    lo, hi = r.get("min"), r.get("max")
    conds = ([f"_f0 < {int(lo)}"] if lo is not None else []) + (
        [f"_f0 > {int(hi)}"] if hi is not None else []
    )
    return _grouped(
        item,
        s,
        r,
        [("rows", "count(*)")],
        " OR ".join(conds) or "false",
        "_f0",
        f"[{lo}, {hi}] rows per {r['group_by']}",
        lambda e: f"{e['rows']} rows",
        empty_fails=bool(lo),
    )


def _range_by(item: str, s: CatalogSource, r: Mapping[str, Any]) -> CheckResult:
    c = _quote(r["column"])
    conds = ([f"{c} < {float(r['min'])}"] if r.get("min") is not None else []) + (
        [f"{c} > {float(r['max'])}"] if r.get("max") is not None else []
    )
    outside = " OR ".join(conds) or "false"
    return _grouped(
        item,
        s,
        r,
        [("outside", f"count(*) FILTER (WHERE {outside})"), ("rows", "count(*)")],
        "_f0 > 0",
        "_f0 DESC",
        f"[{r.get('min')}, {r.get('max')}] in every {r['group_by']}",
        lambda e: f"{e['outside']} of {e['rows']} outside",
    )


def _counts_by(
    item: str, s: CatalogSource, r: Mapping[str, Any], offending: str, expected: str
) -> CheckResult:
    """finite and not_null per group: for each column, the rows where ``offending`` (with {c}) holds."""
    cols = list(r["columns"])
    figures = [(c, f"count(*) FILTER (WHERE {offending.format(c=_quote(c))})") for c in cols]
    terms = [f"_f{i}" for i in range(len(cols))]
    return _grouped(
        item,
        s,
        r,
        figures,
        " OR ".join(f"{t} > 0" for t in terms),
        f"({' + '.join(terms)}) DESC",
        expected,
        lambda e: ", ".join(f"{c} {e[c]}" for c in cols if e[c]),
    )


def _finite_by(item: str, s: CatalogSource, r: Mapping[str, Any]) -> CheckResult:
    return _counts_by(item, s, r, "isnan({c}) OR isinf({c})", f"no NaN or inf in any {r['group_by']}")


def _not_null_by(item: str, s: CatalogSource, r: Mapping[str, Any]) -> CheckResult:
    return _counts_by(item, s, r, "{c} IS NULL", f"no nulls in any {r['group_by']}")


def _footprint_by(item: str, s: CatalogSource, r: Mapping[str, Any]) -> CheckResult:
    ra, dec = _quote(r.get("ra", "coord_ra")), _quote(r.get("dec", "coord_dec"))
    outside, expected = _outside_footprint(r, ra, dec)
    return _grouped(
        item,
        s,
        r,
        [("outside", f"count(*) FILTER (WHERE {outside})"), ("rows", "count(*)")],
        "_f0 > 0",
        "_f0 DESC",
        f"{expected}, in every {r['group_by']}",
        lambda e: f"{e['outside']} of {e['rows']} outside",
    )


def _band_coverage_by(item: str, s: CatalogSource, r: Mapping[str, Any]) -> CheckResult:
    bands = list(r["bands"])
    need = float(r.get("min_fraction", 0.5))
    figures = [
        (b, f"avg(CASE WHEN {_quote(c)} IS NULL OR isnan({_quote(c)}) THEN 0 ELSE 1 END)")
        for b, c in ((b, str(r["column"]).format(band=b)) for b in bands)
    ]
    terms = [f"_f{i}" for i in range(len(bands))]
    return _grouped(
        item,
        s,
        r,
        figures,
        " OR ".join(f"{t} < {need}" for t in terms),
        f"least({', '.join(terms)})" if len(terms) > 1 else terms[0],
        f"≥ {need} per band in every {r['group_by']}",
        lambda e: (
            ", ".join(f"{b} {round(float(e[b] or 0), 4)}" for b in bands if (e[b] or 0) < need) + f" < {need}"
        ),
    )


_GROUPED = {
    "row_count": _row_count_by,
    "range": _range_by,
    "finite": _finite_by,
    "not_null": _not_null_by,
    "footprint": _footprint_by,
    "band_coverage": _band_coverage_by,
}
"""The rules that take ``group_by`` (`_UNGROUPED` says why the others do not)."""

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
