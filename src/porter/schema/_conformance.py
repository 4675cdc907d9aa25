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
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import PorterError
from ._felis import column_name, compatibility, primary_key, sql_family
from ._postgres_source import is_postgres_location, snapshot_table
from ._result import ERROR, FAIL, PASS, WARN, CheckResult

__all__ = ["CatalogSource", "RuleError", "check_rules", "conformance", "schema_diff"]

SAMPLE = 10
_UNIT_UCDS = ("pos.eq", "phot.flux", "phot.mag", "stat.error;pos", "stat.error;phot", "time.epoch")


class RuleError(PorterError, ValueError):
    """A content rule in a plan that cannot be run as written."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class CatalogSource:
    """A catalog as DuckDB sees it: Parquet files under a local path or glob, under ``s3://`` (read through
    pyarrow's S3 client), or a PostgreSQL table (``postgresql://…/db#schema.Table``, snapshotted to Parquet)."""

    def __init__(self, location: str, con: Any = None):
        import duckdb

        self.location = location
        self.con = con or duckdb.connect()
        # Parquet min/max statistics leave NaN out, and DuckDB prunes scans by them: with these optimizers on,
        # `WHERE isnan(x)` finds nothing in a file whose statistics say x ∈ [1, 3].  Checks scan everything anyway.
        self.con.execute("SET disabled_optimizers = 'filter_pushdown,statistics_propagation'")
        self._s3: Any = None
        self._types: dict[str, str] | None = None  # a SQL table's own column types
        if is_postgres_location(location):
            self._snapshot = tempfile.TemporaryDirectory(prefix="porter-catalog-")
            self._types = snapshot_table(location, Path(self._snapshot.name))
            pattern = str(Path(self._snapshot.name) / "*.parquet")
        elif location.startswith("s3://"):
            pattern = location.rstrip("/") + ("/**/*.parquet" if not location.endswith(".parquet") else "")
            if not self.register_s3().glob(pattern.removeprefix("s3://")):
                raise PorterError(f"No Parquet files at {location}; check the item's location.")
        else:
            path = Path(location)
            pattern = str(path / "**" / "*.parquet") if path.is_dir() else location
            if not globmod.glob(pattern, recursive=True):
                raise PorterError(f"No Parquet files at {location}; check the item's location.")
        self.sql = f"read_parquet('{pattern}', union_by_name = true)"

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

    def columns(self) -> dict[str, str]:
        if self._types is not None:
            return dict(self._types)
        return {r[0]: r[1] for r in self.con.execute(f"DESCRIBE SELECT * FROM {self.sql}").fetchall()}

    def one(self, query: str) -> Any:
        return self.con.execute(query).fetchone()

    def rows(self, query: str) -> list[tuple]:
        return self.con.execute(query).fetchall()


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
        ref = (references or {}).get(target)
        label = f"foreign key {','.join(cols)} → {target}"
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


def check_rules(item: str, source: CatalogSource, rules: Sequence[Mapping[str, Any]]) -> list[CheckResult]:
    """Run the plan's content rules: row_count, range, finite, not_null, unique, footprint, band_coverage."""
    have = source.columns()
    out = []
    for rule in rules:
        kind = str(rule.get("rule", ""))
        fn = _RULES.get(kind)
        if fn is None:
            raise RuleError(f"Item {item!r}: unknown rule {kind!r}; rules: {', '.join(sorted(_RULES))}.")
        for c in _rule_columns(rule):
            if c not in have:
                raise RuleError(
                    f"Item {item!r}: rule {kind!r} names column {c!r}, which the catalog does not have."
                )
        out.append(_timed(item, _label(rule), lambda f=fn, r=rule: f(item, source, r)))
    return out


def _rule_columns(rule: Mapping[str, Any]) -> list[str]:
    cols = list(rule.get("columns") or [])
    for key in ("column", "ra", "dec"):
        if rule.get(key):
            cols.append(str(rule[key]))
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
