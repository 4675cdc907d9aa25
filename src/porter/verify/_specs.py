"""Specifications: lsst/verify's multi-document spec YAML, resolved with diagnosable errors.

A spec file (``specs/<package>/<file>.yaml``) holds documents of two kinds, as in lsst/verify:

- a *partial* has an ``id`` and is only a base for others;
- a *specification* has a ``name`` (``design``, ``AM1.design`` or ``validate_drp.AM1.design``).

``base`` (one reference or a list) names what a document inherits from: ``#id`` (a partial of
the same file), ``path#id`` (a partial of another file of the package, path relative to the
package's spec directory, without extension), ``package:path#id``, or another specification's
name.  Bases are merged in order, then the document, by lsst/verify's rules (`merge_documents`).

Where lsst/verify reports "there are unresolved specification documents" with a dump of dicts,
porter names the document, the base, the file and the line, and tells a missing base from a
cycle (the whole chain is named).  porter's extension: ``level: minimum|design|stretch``,
inferred from the name's last component (``design``, ``minimum_gri``) when absent.
"""

from __future__ import annotations

import math
import operator
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import did_you_mean
from ._merge import merge_documents
from ._metrics import LEVELS, Level, MetricSet, SourceLocation
from ._problems import (
    DeclarationError,
    MeasurementValueError,
    Problem,
    UnitMismatchError,
    VerifyError,
    display_path,
)
from ._units import parse_unit
from ._validation import problems_from_validation, unknown_key_problems
from ._yaml import SourceDocument, load_documents

if TYPE_CHECKING:
    import astropy.units as u

__all__ = [
    "OPERATORS",
    "Specification",
    "SpecificationSet",
    "Threshold",
    "UnknownSpecificationError",
    "check_against_metrics",
    "infer_level",
    "normalize_partial_name",
    "normalize_spec_name",
]

Operator = Literal["<", "<=", ">", ">=", "==", "!="]
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
"""Threshold operators, oriented ``measurement OP threshold`` as in lsst/verify."""

SPEC_KEYS = (
    "name",
    "id",
    "base",
    "metric",
    "package",
    "threshold",
    "tags",
    "metadata_query",
    "type",
    "level",
)
THRESHOLD_KEYS = ("value", "unit", "operator")

PARTIAL_PATTERN = re.compile(r"^(?:(?P<package>[^:#\s]+):)?(?P<path>[^#\s]+)?#(?P<name>\S+)$")


class UnknownSpecificationError(VerifyError, KeyError):
    """A specification name no loaded specification has."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Threshold(BaseModel):
    """A threshold: the measurement passes when ``measurement OPERATOR value·unit``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: float
    unit: str = ""
    operator: Operator

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"a threshold must be a finite number, not {value}")
        return value

    @field_validator("unit", mode="before")
    @classmethod
    def _unit_text(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("unit")
    @classmethod
    def _astropy_unit(cls, unit: str) -> str:
        parse_unit(unit)
        return unit

    @property
    def quantity(self) -> u.Quantity:
        """The threshold as an astropy Quantity."""
        return self.value * parse_unit(self.unit)


class Specification(BaseModel):
    """A resolved threshold specification for one metric.

    ``name`` is the full name ``package.metric.spec``; ``metric`` the full metric name.
    ``metadata_query`` scopes it: it applies to a measurement whose metadata has every one
    of its terms with the same value (lsst/verify's MetadataQuery).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    metric: str
    threshold: Threshold
    level: Level | None = None
    tags: tuple[str, ...] = ()
    metadata_query: dict[str, Any] = Field(default_factory=dict)
    source: SourceLocation | None = Field(default=None, exclude=True, repr=False)

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_set(cls, value: Any) -> Any:
        if value is None:
            return ()
        values = [value] if isinstance(value, str) else list(value)
        return tuple(sorted(set(map(str, values))))  # lsst/verify keeps tags as a set

    @field_validator("metadata_query", mode="before")
    @classmethod
    def _query(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def short_name(self) -> str:
        """The spec's own name (``design``), without package and metric."""
        return self.name.rsplit(".", 1)[-1]

    @property
    def package(self) -> str:
        """The package of the metric (``validate_drp``)."""
        return self.metric.rpartition(".")[0]

    @property
    def quantity(self) -> u.Quantity:
        """The threshold as an astropy Quantity."""
        return self.threshold.quantity

    @property
    def operator(self) -> str:
        """The threshold's comparison operator (``<=``)."""
        return self.threshold.operator

    def check(self, measurement: u.Quantity | float) -> bool:
        """Whether ``measurement`` meets this specification, after converting it to the threshold's unit.

        A plain number is taken as dimensionless.  Raises `UnitMismatchError` naming both units
        when they cannot be compared, and `MeasurementValueError` for NaN, infinity or a
        non-scalar.
        """
        import astropy.units as u

        if isinstance(measurement, bool) or not isinstance(measurement, u.Quantity | int | float):
            raise MeasurementValueError(
                f"{self.name}: {measurement!r} is not a measurement; give an astropy Quantity (value * unit)"
            )
        quantity = u.Quantity(measurement)
        if not quantity.isscalar:
            raise MeasurementValueError(f"{self.name}: a measurement is one value, not an array {quantity!r}")
        if not math.isfinite(float(quantity.value)):
            raise MeasurementValueError(
                f"{self.name}: the measurement is {quantity.value}; a NaN or infinite measurement cannot be checked"
            )
        target = parse_unit(self.threshold.unit)
        try:
            value = float(quantity.to_value(target))
        except u.UnitConversionError:
            raise UnitMismatchError(
                f"{self.name}: a measurement in {_unit_words(quantity.unit)} cannot be compared with the "
                f"threshold in {_unit_words(self.threshold.unit)}{_kinds(quantity.unit, target)}"
            ) from None
        return bool(OPERATORS[self.threshold.operator](value, self.threshold.value))

    def applies_to(self, metadata: Mapping[str, Any]) -> bool:
        """Whether every term of ``metadata_query`` is in ``metadata`` with the same value."""
        return all(key in metadata and metadata[key] == value for key, value in self.metadata_query.items())

    def to_job_json(self) -> dict[str, Any]:
        """The spec as lsst/verify writes it in a Job's ``specs`` list (plus porter's ``level``)."""
        doc: dict[str, Any] = {
            "name": self.name,
            "type": "threshold",
            "threshold": self.threshold.model_dump(),
            "metadata_query": dict(self.metadata_query),
            "tags": list(self.tags),
        }
        if self.level:
            doc["level"] = self.level
        return doc

    def to_yaml_dict(self) -> dict[str, Any]:
        """A flat spec document (no base) that resolves to this specification."""
        doc: dict[str, Any] = {
            "name": self.name,
            "metric": self.metric.rpartition(".")[2],
            "threshold": self.threshold.model_dump(),
        }
        if self.tags:
            doc["tags"] = list(self.tags)
        if self.metadata_query:
            doc["metadata_query"] = dict(self.metadata_query)
        if self.level:
            doc["level"] = self.level
        return doc


def _unit_words(unit: Any) -> str:
    text = unit.to_string() if hasattr(unit, "to_string") else str(unit)
    return repr(text) if text else "'' (dimensionless)"


def _kinds(a: Any, b: Any) -> str:
    """`` (magnitude vs angle)``: what two units measure, when astropy knows both."""
    kinds = [str(unit.physical_type) for unit in (a, b)]
    return f" ({kinds[0]} vs {kinds[1]})" if "unknown" not in kinds else ""


def infer_level(short_name: str, explicit: Any = None) -> str | None:
    """The level a spec is at: ``explicit`` if given, else the one level word in its name.

    lsst/verify names its specs after LPM-17's levels (``design``, ``minimum_gri``, ``stretch``).
    """
    if explicit is not None:
        return str(explicit)
    words = [w for w in re.split(r"[._\-]", short_name) if w in LEVELS]
    return words[0] if len(set(words)) == 1 else None


def normalize_partial_name(name: str, package: str, yaml_id: str) -> str:
    """A partial reference as ``package:path#id`` (lsst/verify's fully-qualified form).

    ``#id`` is in the current file (``yaml_id``), ``path#id`` in another file of ``package``.
    """
    ref = name if "#" in name else f"#{name}"
    match = PARTIAL_PATTERN.match(ref)
    if match is None:
        raise ValueError(f"{name!r} is not a partial reference (#id, path#id or package:path#id)")
    path = match.group("path") or yaml_id
    for suffix in (".yaml", ".yml"):
        path = path.removesuffix(suffix)
    return f"{match.group('package') or package}:{path}#{match.group('name')}"


def normalize_spec_name(name: str, metric: str | None, package: str) -> str | None:
    """A spec name as ``package.metric.spec``, or None while the metric is not known yet."""
    parts = name.split(".")
    if len(parts) >= 3:
        return name
    if len(parts) == 2:
        return f"{package}.{name}"
    if not metric:
        return None
    return f"{metric}.{name}" if "." in metric else f"{package}.{metric}.{name}"


def _metric_full_name(metric: str, package: str) -> str:
    return metric if "." in metric else f"{package}.{metric}"


@dataclass(eq=False)
class _Doc:
    """One spec or partial document while inheritance is resolved."""

    source: SourceDocument
    shown: str
    package: str
    yaml_id: str
    kind: Literal["partial", "spec"]
    key: str
    bases: list[tuple[str, int, str]]
    body: dict[str, Any]
    resolved: dict[str, Any] | None = None
    origin: dict[tuple[str, ...], _Doc] = field(default_factory=dict)
    state: Literal["new", "active", "done", "failed"] = "new"

    def declared_name(self) -> str | None:
        """The full spec name, when the document alone says it."""
        metric = self.body.get("metric")
        return normalize_spec_name(self.key, metric if isinstance(metric, str) else None, self.package)

    @property
    def label(self) -> str:
        """How the document is named in messages."""
        if self.kind == "partial":
            return self.key
        return self.declared_name() or f"{self.package} spec {self.key!r}"

    @property
    def where(self) -> str:
        """``file:line`` of the document."""
        return f"{self.shown}:{self.source.line}"


def _key_paths(doc: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in doc.items():
        path = (*prefix, str(key))
        yield path
        if isinstance(value, Mapping):
            yield from _key_paths(value, path)


class _Resolver:
    """Resolves the inheritance of every document of a set of spec files, collecting problems."""

    def __init__(self, docs: list[_Doc]) -> None:
        self.docs = docs
        self.problems: list[Problem] = []
        self.partials: dict[str, _Doc] = {}
        for doc in docs:
            if doc.kind != "partial":
                continue
            if doc.key in self.partials:
                first = self.partials[doc.key]
                self.problems.append(
                    Problem(
                        doc.shown,
                        doc.source.line_of("id"),
                        doc.key,
                        "id",
                        f"the partial id is defined twice (first at {first.where})",
                        "give each partial of a file its own id",
                    )
                )
                continue
            self.partials[doc.key] = doc

    def resolve_all(self) -> None:
        """Resolve every document; failures are recorded as problems."""
        for doc in self.docs:
            self.resolve(doc, [])

    def resolve(self, doc: _Doc, stack: list[_Doc]) -> dict[str, Any] | None:
        """The merged document, or None when a base is missing, unresolvable or in a cycle."""
        if doc.state == "done":
            return doc.resolved
        if doc.state == "failed":
            return None
        if doc.state == "active":
            self._cycle([*stack[stack.index(doc) :], doc])
            return None
        doc.state = "active"
        stack.append(doc)
        built: dict[str, Any] = {}
        origin: dict[tuple[str, ...], _Doc] = {}
        ok = True
        for ref, line, written in doc.bases:
            target = self._find(ref, line, written, doc, stack)
            if target is None:
                ok = False
                break
            resolved = self.resolve(target, stack)
            if resolved is None or doc.state == "failed":
                if doc.state != "failed":  # not in the cycle itself: say why this one is missing
                    self.problems.append(
                        Problem(
                            doc.shown,
                            line,
                            doc.label,
                            "base",
                            f"base {written!r} cannot be resolved (see the problem of {target.label} at {target.where})",
                            "fix that base first",
                        )
                    )
                ok = False
                break
            base_doc = resolved if target.kind == "partial" else self._spec_as_base(target, resolved)
            built = merge_documents(built, base_doc)
            origin.update({p: target.origin.get(p, target) for p in _key_paths(base_doc)})
            if target.kind == "spec":
                built["metric"] = resolved.get("metric")
        stack.pop()
        if not ok or doc.state == "failed":
            doc.state = "failed"
            return None
        built = merge_documents(built, doc.body)
        origin.update({p: doc for p in _key_paths(doc.body)})
        doc.resolved, doc.origin, doc.state = built, origin, "done"
        return built

    @staticmethod
    def _spec_as_base(target: _Doc, resolved: dict[str, Any]) -> dict[str, Any]:
        """What a spec contributes as a base: its JSON form (name, type, threshold, query, tags)."""
        base: dict[str, Any] = {}
        for key in ("threshold", "metadata_query", "tags", "level"):
            if key in resolved:
                base[key] = resolved[key]
        if isinstance(base.get("tags"), str):
            base["tags"] = [base["tags"]]
        return base

    def _find(self, ref: str, line: int, written: str, doc: _Doc, stack: list[_Doc]) -> _Doc | None:
        if ref.count("#") == 1 and ":" in ref:
            found = self.partials.get(ref)
            if found is None:
                package, _, rest = ref.partition(":")
                path, _, pid = rest.partition("#")
                same_file = [
                    k.rpartition("#")[2] for k in self.partials if k.startswith(f"{package}:{path}#")
                ]
                known = same_file or [k for k in self.partials if k.startswith(f"{package}:")]
                self.problems.append(
                    Problem(
                        doc.shown,
                        line,
                        doc.label,
                        "base",
                        f"base {written!r} names no partial: no document with id {pid!r} in {path}.yaml of "
                        f"package {package}.{did_you_mean(pid, known, 'ids')}",
                        f"add a document with `id: {pid}` to specs/{package}/{path}.yaml, or correct the base",
                    )
                )
            return found
        metric = doc.body.get("metric") if isinstance(doc.body.get("metric"), str) else None
        wanted = normalize_spec_name(ref, metric, doc.package)
        if wanted is None:
            self.problems.append(
                Problem(
                    doc.shown,
                    line,
                    doc.label,
                    "base",
                    f"base {ref!r} names a specification without its metric",
                    f"write it as METRIC.{ref} (or #id for a partial)",
                )
            )
            return None
        candidates = [d for d in self.docs if d.kind == "spec" and d.declared_name() == wanted]
        if not candidates:  # specs whose metric is only known from their own bases
            short = wanted.rsplit(".", 1)[-1]
            for other in self.docs:
                if other.kind != "spec" or other.key != short or other.declared_name() is not None:
                    continue
                resolved = self.resolve(other, stack)
                if resolved is None:
                    continue
                if normalize_spec_name(other.key, resolved.get("metric"), other.package) == wanted:
                    candidates.append(other)
        if not candidates:
            known = [d.declared_name() or d.key for d in self.docs if d.kind == "spec"]
            self.problems.append(
                Problem(
                    doc.shown,
                    line,
                    doc.label,
                    "base",
                    f"base {ref!r} names no specification ({wanted} is not defined).{did_you_mean(wanted, known)}",
                    "define that specification, or correct the base",
                )
            )
            return None
        return candidates[0]

    def _cycle(self, chain: list[_Doc]) -> None:
        first = chain[0]
        path = " → ".join(f"{d.label} ({d.where})" for d in chain)
        self.problems.append(
            Problem(
                first.shown,
                first.source.line_of("base"),
                first.label,
                "base",
                f"inheritance cycle: {path}",
                "remove one of these bases so the chain ends",
            )
        )
        for d in chain:
            d.state = "failed"


def _spec_files(path: Path) -> list[tuple[Path, str, Path]]:
    """(file, package, package spec directory) of every spec YAML file under ``path``."""
    yaml_ext = (".yaml", ".yml")
    if path.is_file():
        parts = path.resolve().parts
        if "specs" in parts[:-2]:
            i = len(parts) - 1 - parts[::-1].index("specs")
            package_dir = Path(*parts[: i + 2])
        else:
            package_dir = path.resolve().parent
        return [(path, package_dir.name, package_dir)]
    if (path / "specs").is_dir():
        path = path / "specs"
    elif (path / "metrics").is_dir() or not path.is_dir():
        return []  # a metrics package without specifications (or nothing at all)
    package_dirs = [d for d in sorted(path.iterdir()) if d.is_dir()] if path.name == "specs" else [path]
    found = []
    for package_dir in package_dirs:
        for root, _, names in sorted(os.walk(package_dir)):
            for name in sorted(names):
                if name.endswith(yaml_ext):
                    found.append((Path(root) / name, package_dir.name, package_dir))
    return found


def _read_docs(file: Path, package: str, package_dir: Path) -> tuple[list[_Doc], list[Problem]]:
    shown = display_path(file)
    yaml_id = file.resolve().relative_to(package_dir.resolve()).with_suffix("").as_posix()
    try:
        sources = load_documents(file)
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(shown, None, package, None, f"cannot be read ({exc})")]
    except Exception as exc:  # yaml.YAMLError
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        return [], [Problem(shown, line, package, None, f"is not valid YAML ({exc})", "fix the YAML syntax")]
    docs: list[_Doc] = []
    problems: list[Problem] = []
    for source in sources:
        data = source.data
        label = f"document {source.index + 1} of {yaml_id}"
        if not isinstance(data, dict):
            problems.append(Problem(shown, source.line, label, None, "a spec document must be a mapping"))
            continue
        if ("id" in data) == ("name" in data):
            problems.append(
                Problem(
                    shown,
                    source.line,
                    label,
                    None,
                    "has both id and name"
                    if "id" in data
                    else "has neither id (a partial) nor name (a spec)",
                    "a partial has `id:`, a specification `name:`",
                )
            )
            continue
        kind: Literal["partial", "spec"] = "partial" if "id" in data else "spec"
        raw_key = data["id"] if kind == "partial" else data["name"]
        if not isinstance(raw_key, str) or not raw_key:
            field_name = "id" if kind == "partial" else "name"
            problems.append(
                Problem(shown, source.line_of(field_name), label, field_name, "must be a non-empty string")
            )
            continue
        try:
            key = normalize_partial_name(raw_key, package, yaml_id) if kind == "partial" else raw_key
        except ValueError as exc:
            problems.append(Problem(shown, source.line_of("id"), label, "id", str(exc)))
            continue
        raw_bases = data.get("base", [])
        raw_bases = [raw_bases] if isinstance(raw_bases, str) else raw_bases
        bases: list[tuple[str, int, str]] = []
        bad_base = not isinstance(raw_bases, list)
        for i, ref in enumerate(raw_bases if isinstance(raw_bases, list) else []):
            line = source.line_of("base", i) if isinstance(data.get("base"), list) else source.line_of("base")
            if not isinstance(ref, str):
                bad_base = True
                break
            try:
                bases.append(
                    (normalize_partial_name(ref, package, yaml_id) if "#" in ref else ref, line, ref)
                )
            except ValueError as exc:
                problems.append(Problem(shown, line, key, "base", str(exc)))
                bad_base = True
        if bad_base:
            problems.append(
                Problem(
                    shown, source.line_of("base"), key, "base", "must be a reference or a list of references"
                )
            )
            continue
        body = {k: v for k, v in data.items() if k not in ("id", "base", "package")}
        doc = _Doc(source, shown, package, yaml_id, kind, key, bases, body)
        problems += unknown_key_problems(source, data, SPEC_KEYS, document=doc.label, only_typos=True)
        if isinstance(data.get("threshold"), dict):
            problems += unknown_key_problems(
                source, data["threshold"], THRESHOLD_KEYS, document=doc.label, prefix=("threshold",)
            )
        docs.append(doc)
    return docs, problems


def _build(doc: _Doc) -> tuple[Specification | None, list[Problem]]:
    """The Specification a resolved spec document describes, or the problems that stop it."""
    assert doc.resolved is not None
    data = doc.resolved

    def located(path: tuple[str, ...]) -> tuple[str, int]:
        for end in range(len(path), 0, -1):
            owner = doc.origin.get(path[:end])
            if owner is not None:
                return owner.shown, owner.source.line_of(*path)
        return doc.shown, doc.source.line

    metric = data.get("metric")
    if not isinstance(metric, str) or not metric:
        return None, [
            Problem(
                doc.shown,
                doc.source.line,
                doc.label,
                "metric",
                "no metric: neither the document nor its bases say which metric it is for",
                "add `metric: NAME` to the document or to a partial it inherits",
            )
        ]
    name = normalize_spec_name(doc.key, metric, doc.package)
    assert name is not None
    if data.get("type", "threshold") != "threshold":
        file, line = located(("type",))
        return None, [
            Problem(
                file, line, name, "type", f"type {data['type']!r} is not supported", "only threshold specs"
            )
        ]
    if not isinstance(data.get("threshold"), dict):
        file, line = located(("threshold",))
        return None, [
            Problem(
                file,
                line,
                name,
                "threshold",
                "has no threshold mapping",
                "add threshold: {value: ..., unit: ..., operator: ...}",
            )
        ]
    threshold = {k: v for k, v in data["threshold"].items() if k in THRESHOLD_KEYS}
    short = name.rsplit(".", 1)[-1]
    fields: dict[str, Any] = {
        "name": name,
        "metric": _metric_full_name(metric, doc.package),
        "threshold": threshold,
        "level": infer_level(short, data.get("level")),
        "tags": data.get("tags"),
        "metadata_query": data.get("metadata_query"),
    }
    try:
        spec = Specification(source=SourceLocation(file=doc.shown, line=doc.source.line), **fields)
    except ValidationError as exc:
        return None, problems_from_validation(
            exc,
            file=doc.shown,
            document=name,
            line_of=lambda path: located(tuple(map(str, path)))[1],
            file_of=lambda path: located(tuple(map(str, path)))[0],
        )
    return spec, []


class SpecificationSet:
    """Resolved specifications by full name, and the partials they were built from."""

    def __init__(
        self,
        specifications: Iterable[Specification] = (),
        partials: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self._specs: dict[str, Specification] = {s.name: s for s in specifications}
        self.partials: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (partials or {}).items()}

    @classmethod
    def load(cls, path: str | Path, metrics: MetricSet | None = None) -> SpecificationSet:
        """The specs of a metrics package (``specs/<package>/…``), one package's spec directory, or one file.

        With ``metrics``, each spec's metric must be defined and its threshold's unit compatible.
        Raises `DeclarationError` listing every problem with file, line, document and field.
        """
        specs, problems = cls.read(path, metrics)
        if problems:
            raise DeclarationError(problems)
        return specs

    @classmethod
    def read(
        cls, path: str | Path, metrics: MetricSet | None = None
    ) -> tuple[SpecificationSet, list[Problem]]:
        """Like `load`, but returns the specs that resolved and every problem, without raising."""
        docs: list[_Doc] = []
        problems: list[Problem] = []
        if not Path(path).exists():
            problems.append(Problem(display_path(path), None, str(path), None, "does not exist"))
        for file, package, package_dir in _spec_files(Path(path)):
            found, wrong = _read_docs(file, package, package_dir)
            docs += found
            problems += wrong
        resolver = _Resolver(docs)
        resolver.resolve_all()
        problems += resolver.problems
        specs: list[Specification] = []
        seen: dict[str, _Doc] = {}
        for doc in docs:
            if doc.kind != "spec" or doc.state != "done":
                continue
            spec, wrong = _build(doc)
            problems += wrong
            if spec is None:
                continue
            if spec.name in seen:
                problems.append(
                    Problem(
                        doc.shown,
                        doc.source.line_of("name"),
                        spec.name,
                        "name",
                        f"the specification is defined twice (first at {seen[spec.name].where})",
                        "rename one of them",
                    )
                )
                continue
            seen[spec.name] = doc
            specs.append(spec)
        if metrics is not None:
            problems += check_against_metrics(specs, metrics)
        partials = {key: doc.resolved for key, doc in resolver.partials.items() if doc.resolved is not None}
        return cls(specs, partials), problems

    def __getitem__(self, name: str) -> Specification:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownSpecificationError(
                f"no specification {name!r}.{did_you_mean(name, self._specs, 'specifications')}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[Specification]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    @property
    def names(self) -> list[str]:
        """Full names of the specifications, sorted."""
        return sorted(self._specs)

    def for_metric(self, metric: str) -> list[Specification]:
        """The specs of ``metric`` (full name), from the least demanding level to the most."""
        order = {level: i for i, level in enumerate(LEVELS)}
        found = [s for s in self if s.metric == metric]
        return sorted(found, key=lambda s: (order.get(s.level or "", len(LEVELS)), s.name))

    def applicable(self, metric: str, metadata: Mapping[str, Any] | None = None) -> list[Specification]:
        """The specs of ``metric`` whose metadata query matches ``metadata`` (instrument, band …)."""
        return [s for s in self.for_metric(metric) if s.applies_to(metadata or {})]

    def to_yaml_documents(self) -> list[dict[str, Any]]:
        """Every spec as a flat document (full name, metric, threshold …), for writing back."""
        return [self._specs[name].to_yaml_dict() for name in self.names]

    def __repr__(self) -> str:
        return f"SpecificationSet({len(self)} specifications, {len(self.partials)} partials)"


def check_against_metrics(specs: Iterable[Specification], metrics: MetricSet) -> list[Problem]:
    """Problems of specs whose metric is not defined or whose threshold unit does not fit the metric's."""
    problems = []
    for spec in specs:
        file = spec.source.file if spec.source else "?"
        line = spec.source.line if spec.source else None
        metric = metrics.get(spec.metric)
        if metric is None:
            problems.append(
                Problem(
                    file,
                    line,
                    spec.name,
                    "metric",
                    f"unknown metric {spec.metric!r}.{did_you_mean(spec.metric, metrics.names, 'metrics')}",
                    f"define {spec.metric.rpartition('.')[2]} in metrics/{spec.package}.yaml, or correct the metric",
                )
            )
            continue
        threshold_unit, metric_unit = parse_unit(spec.threshold.unit), parse_unit(metric.unit)
        if not threshold_unit.is_equivalent(metric_unit):
            problems.append(
                Problem(
                    file,
                    line,
                    spec.name,
                    "threshold.unit",
                    f"threshold unit {_unit_words(spec.threshold.unit)} is incompatible with metric "
                    f"{metric.name}'s unit {_unit_words(metric.unit)}{_kinds(threshold_unit, metric_unit)}",
                    f"write the threshold in a unit convertible to {_unit_words(metric.unit)}",
                )
            )
    return problems
