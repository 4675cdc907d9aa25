"""porter.verify's declarations (issue 16, first slice): metric and spec YAML, Job JSON, lint.

The files under tests/data/verify/ are written from lsst/verify's documented formats (there are no
verify files in shared/data): a ``validate_drp`` metrics package after verify_metrics, with the
technote's AM1 example (a partial ``AM1-base-srd`` with unit and operator; ``design`` 10 mas and
``minimum`` 20 mas inheriting it) and PA1 specs scoped by ``metadata_query``; and a Job JSON file
as lsst/verify's ``Job.write`` produces it.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import astropy.units as u
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from porter.cli import app
from porter.verify import (
    DeclarationError,
    JobFormatError,
    MeasurementValueError,
    MetricSet,
    SpecificationSet,
    UnitMismatchError,
    UnknownMetricError,
    job_from_dict,
    lint,
    merge_documents,
    read_job,
    write_job,
)

DATA = Path(__file__).parent / "data" / "verify"
PACKAGE = DATA / "validate_drp"
JOB = DATA / "jobs" / "validate_drp_hsc.verify.json"

runner = CliRunner()


def write(root: Path, files: dict[str, str]) -> Path:
    """Write a small metrics package (relative path → YAML text) under ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


METRICS_YAML = """
AM1:
  description: Astrometric repeatability.
  unit: marcsec
  tags: [astrometry]
PA1:
  description: Photometric repeatability.
  unit: mmag
"""


def line_of(path: Path, text: str) -> int:
    """The 1-based line of the first occurrence of ``text`` in ``path``."""
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return i
    raise AssertionError(f"{text!r} not in {path}")


# ---------------------------------------------------------------- metrics


def test_metrics_read_as_lsst_verify_writes_them_with_porters_keys() -> None:
    metrics = MetricSet.load(PACKAGE)
    assert metrics.names == ["validate_drp.AM1", "validate_drp.PA1", "validate_drp.PF1"]
    am1 = metrics["validate_drp.AM1"]
    assert am1.unit == "marcsec" and am1.astropy_unit == u.mas
    assert am1.reference.doc == "LPM-17" and am1.reference.page == 23
    assert am1.tags == ("astrometry", "kpm")
    assert am1.direction == "lower" and am1.dimensions == ("tract", "band")
    assert am1.baseline is not None and am1.baseline.kind == "previous_release"
    assert am1.alert is not None
    assert (am1.alert.level, am1.alert.for_runs, am1.alert.severity) == ("minimum", 2, "critical")
    assert am1.alert.channels == ("webhook:dm-alerts", "email:verify@example.org")
    assert am1.description.startswith("The maximum rms of the astrometric distance")
    assert am1.source is not None and am1.source.line == line_of(
        PACKAGE / "metrics/validate_drp.yaml", "AM1:"
    )
    pf1 = metrics["validate_drp.PF1"]
    assert pf1.unit == "" and pf1.astropy_unit == u.dimensionless_unscaled and pf1.tags == ("photometry",)
    assert metrics["validate_drp.PA1"].baseline.n == 5  # type: ignore[union-attr]
    assert metrics.subset(tags=["kpm"]).names == ["validate_drp.AM1", "validate_drp.PA1"]
    assert am1.check_unit(3 * u.arcsec) and not am1.check_unit(3 * u.mag)


def test_unknown_metric_names_the_closest() -> None:
    metrics = MetricSet.load(PACKAGE)
    with pytest.raises(UnknownMetricError, match=r"'validate_drp.AM2'.*Did you mean 'validate_drp.AM1'"):
        metrics["validate_drp.AM2"]


def test_a_bad_metric_unit_names_file_line_and_metric(tmp_path: Path) -> None:
    root = write(tmp_path, {"metrics/pkg.yaml": "AM1:\n  description: x\n  unit: marcsecs\n"})
    with pytest.raises(DeclarationError) as info:
        MetricSet.load(root)
    (problem,) = info.value.problems
    assert (problem.line, problem.document, problem.field) == (3, "pkg.AM1", "unit")
    assert problem.file.endswith("metrics/pkg.yaml")
    assert "'marcsecs' is not an astropy unit" in problem.problem and "marcsec" in problem.problem
    assert f"{problem.file}:3: pkg.AM1: field 'unit'" in str(info.value)


def test_porters_metric_keys_are_checked(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "metrics/pkg.yaml": """
            AM1:
              unit: mas
              directon: lower
              dimensions: [tract, bnd]
              baseline: {kind: reference_run}
              alert: {level: best, for: 0, channels: [slack:x, email:nobody]}
            """
        },
    )
    _, problems = MetricSet.read(root)
    found = {(p.field, p.line) for p in problems}
    assert ("directon", 3) in found
    assert ("dimensions", 4) in found
    assert ("baseline", 5) in found
    assert {"alert.level", "alert.for", "alert.channels"} <= {p.field for p in problems}
    by_field = {p.field: p for p in problems}
    assert "Did you mean 'direction'" in by_field["directon"].fix
    assert "Did you mean 'band'" in by_field["dimensions"].problem
    assert "reference_run needs run" in by_field["baseline"].problem


# ---------------------------------------------------------------- specifications


def test_the_technote_am1_example_resolves_as_in_lsst_verify() -> None:
    specs = SpecificationSet.load(PACKAGE, MetricSet.load(PACKAGE))
    design, minimum = specs["validate_drp.AM1.design"], specs["validate_drp.AM1.minimum"]
    assert design.threshold.value == 10.0 and minimum.threshold.value == 20.0
    for spec in (design, minimum):
        assert spec.threshold.unit == "milliarcsecond" and spec.threshold.operator == "<="
        assert spec.metric == "validate_drp.AM1"
    assert set(design.tags) == {"AM1", "achromatic", "design"}
    assert set(minimum.tags) == {"AM1", "achromatic", "minimum"}
    assert (design.level, minimum.level) == ("design", "minimum")
    assert design.quantity == 10 * u.mas
    # a base may be another spec: stretch inherits design's threshold, tags and metric
    stretch = specs["validate_drp.AM1.stretch"]
    assert (stretch.threshold.value, stretch.threshold.unit, stretch.level) == (
        5.0,
        "milliarcsecond",
        "stretch",
    )
    assert set(stretch.tags) == {"AM1", "achromatic", "design", "stretch"}
    assert [s.short_name for s in specs.for_metric("validate_drp.AM1")] == ["minimum", "design", "stretch"]
    assert stretch.source is not None
    assert stretch.source.line == line_of(PACKAGE / "specs/validate_drp/AM1.yaml", 'name: "stretch"')


def test_partials_across_files_and_metadata_queries() -> None:
    specs = SpecificationSet.load(PACKAGE)
    gri = specs["validate_drp.PA1.design_gri"]
    # bases#hsc (another file) → #PA1-base → #gri: lists appended, mappings merged
    assert gri.metadata_query == {"instrument": "HSC", "filter_name": "r"}
    assert gri.tags == ("LPM-17",) and gri.threshold.unit == "mmag" and gri.level == "design"
    uzy = specs["validate_drp.PA1.minimum_uzy"]
    assert uzy.threshold.unit == "mag" and uzy.check(9 * u.mmag) and not uzy.check(11 * u.mmag)
    assert [
        s.short_name for s in specs.applicable("validate_drp.PA1", {"instrument": "HSC", "filter_name": "r"})
    ] == [
        "minimum_gri",
        "design_gri",
        "stretch_gri",
    ]
    assert specs.applicable("validate_drp.PA1", {"instrument": "HSC", "filter_name": "z"}) == [uzy]
    assert specs.applicable("validate_drp.PA1", {"instrument": "DECam", "filter_name": "r"}) == []
    assert specs.applicable("validate_drp.PA1", {"filter_name": "r"}) == []  # every term must be present
    assert "validate_drp:bases#hsc" in specs.partials


def test_check_converts_units() -> None:
    specs = SpecificationSet.load(PACKAGE)
    design = specs["validate_drp.AM1.design"]  # <= 10 mas
    assert design.check(0.0099 * u.arcsec) and design.check(10 * u.mas)
    assert not design.check(0.011 * u.arcsec) and not design.check(1 * u.arcmin)
    with pytest.raises(UnitMismatchError, match=r"'mag'.*'milliarcsecond'") as info:
        design.check(3 * u.mag)
    assert "validate_drp.AM1.design" in str(info.value) and "measurement" in str(info.value)
    with pytest.raises(MeasurementValueError, match="NaN"):
        design.check(math.nan * u.mas)
    with pytest.raises(MeasurementValueError, match="not a measurement"):
        design.check("12 mas")  # type: ignore[arg-type]
    with pytest.raises(UnitMismatchError, match="dimensionless"):
        design.check(5.0)  # a plain number is dimensionless


@pytest.mark.parametrize(
    ("operator", "passes"),
    [("<", [1]), ("<=", [1, 2]), (">", [3]), (">=", [2, 3]), ("==", [2]), ("!=", [1, 3])],
)
def test_operators_are_measurement_op_threshold(tmp_path: Path, operator: str, passes: list[int]) -> None:
    root = write(
        tmp_path,
        {
            "metrics/pkg.yaml": "M:\n  unit: ''\n",
            "specs/pkg/M.yaml": f"name: design\nmetric: M\nthreshold: {{value: 2, unit: '', operator: '{operator}'}}\n",
        },
    )
    spec = SpecificationSet.load(root, MetricSet.load(root))["pkg.M.design"]
    assert [v for v in (1, 2, 3) if spec.check(v * u.dimensionless_unscaled)] == passes


def test_a_missing_base_names_the_document_file_and_line(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "specs/pkg/AM1.yaml": """
            id: AM1-base-srd
            metric: AM1
            threshold: {unit: mas, operator: "<="}
            ---
            name: design
            metric: AM1
            base: "#AM1-base-sdr"
            threshold: {value: 10}
            ---
            name: minimum
            base: "other#nothing"
            threshold: {value: 20}
            """
        },
    )
    with pytest.raises(DeclarationError) as info:
        SpecificationSet.load(root)
    typo, other = info.value.problems
    file = root / "specs/pkg/AM1.yaml"
    assert typo.file.endswith("specs/pkg/AM1.yaml") and typo.line == line_of(file, "#AM1-base-sdr")
    assert typo.document == "pkg.AM1.design" and typo.field == "base"
    assert (
        "'#AM1-base-sdr' names no partial" in typo.problem and "Did you mean 'AM1-base-srd'" in typo.problem
    )
    assert other.line == line_of(file, "other#nothing") and "in other.yaml" in other.problem
    assert "specs/pkg/other.yaml" in other.fix


def test_a_cycle_names_every_document_with_its_line(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "specs/pkg/a.yaml": """
            id: one
            base: "b#two"
            metric: AM1
            ---
            name: design
            base: "#one"
            threshold: {value: 1, unit: mas, operator: "<"}
            """,
            "specs/pkg/b.yaml": """
            id: two
            base: "a#one"
            """,
        },
    )
    with pytest.raises(DeclarationError) as info:
        SpecificationSet.load(root)
    cycle = next(p for p in info.value.problems if "cycle" in p.problem)
    a_line, b_line = 1, 1
    assert re.search(
        rf"pkg:a#one \(.*a\.yaml:{a_line}\) → pkg:b#two \(.*b\.yaml:{b_line}\) → pkg:a#one", cycle.problem
    )
    assert cycle.field == "base" and cycle.document == "pkg:a#one"
    dependent = next(p for p in info.value.problems if p.document == "pkg spec 'design'")
    assert "cannot be resolved" in dependent.problem and dependent.line == 6


def test_a_spec_may_not_inherit_itself(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "specs/pkg/a.yaml": "name: design\nmetric: AM1\nbase: AM1.design\nthreshold: {value: 1, operator: '<'}\n"
        },
    )
    with pytest.raises(
        DeclarationError, match=r"inheritance cycle: pkg.AM1.design \(.*a.yaml:1\) → pkg.AM1.design"
    ):
        SpecificationSet.load(root)


def test_unknown_metric_and_incompatible_units_are_named(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "metrics/pkg.yaml": METRICS_YAML,
            "specs/pkg/AM1.yaml": """
            id: base
            metric: AM1
            threshold: {unit: mmag, operator: "<="}
            ---
            name: design
            base: "#base"
            threshold: {value: 10}
            ---
            name: design
            metric: AM2
            threshold: {value: 10, unit: mas, operator: "<="}
            """,
        },
    )
    with pytest.raises(DeclarationError) as info:
        SpecificationSet.load(root, MetricSet.load(root))
    units, unknown = info.value.problems
    assert units.document == "pkg.AM1.design" and units.field == "threshold.unit" and units.line == 5
    assert "'mmag'" in units.problem and "'marcsec'" in units.problem and "pkg.AM1" in units.problem
    assert unknown.document == "pkg.AM2.design" and unknown.field == "metric" and unknown.line == 9
    assert "unknown metric 'pkg.AM2'" in unknown.problem and "Did you mean 'pkg.AM1'" in unknown.problem


def test_an_inherited_bad_field_points_at_the_partial(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "specs/pkg/base.yaml": "id: srd\nmetric: AM1\nthreshold: {unit: mas, operator: '=<'}\n",
            "specs/pkg/AM1.yaml": "name: design\nbase: 'base#srd'\nthreshold: {value: 1}\n",
        },
    )
    with pytest.raises(DeclarationError) as info:
        SpecificationSet.load(root)
    (problem,) = info.value.problems
    assert problem.file.endswith("specs/pkg/base.yaml") and problem.line == 3
    assert problem.document == "pkg.AM1.design" and problem.field == "threshold.operator"


def test_nan_thresholds_and_specs_without_metric_are_refused(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "specs/pkg/a.yaml": """
            name: design
            metric: AM1
            threshold: {value: .nan, unit: mas, operator: "<"}
            ---
            name: minimum
            threshold: {value: 1, unit: mas, operator: "<"}
            """
        },
    )
    _, problems = SpecificationSet.read(root)
    assert [(p.document, p.field, p.line) for p in problems] == [
        ("pkg.AM1.design", "threshold.value", 3),
        ("pkg spec 'minimum'", "metric", 5),
    ]
    assert "finite" in problems[0].problem


# ---------------------------------------------------------------- inheritance merge (hypothesis)


def reference_merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The straightforward reading of lsst/verify's rules: fold the chain, base first."""

    def merge(a: Any, b: Any) -> Any:
        if isinstance(a, dict) and isinstance(b, dict):
            out = dict(a)
            for k, v in b.items():
                out[k] = merge(a[k], v) if k in a else v
            return out
        if isinstance(a, list) and isinstance(b, list):
            return a + b
        return b

    out: dict[str, Any] = {}
    for doc in docs:
        out = merge(out, doc)
    return out


UNITS = ["mas", "arcsec", "marcsec", "milliarcsecond", "deg"]
words = st.text("abcdefgh", min_size=1, max_size=4)
partial_bodies = st.fixed_dictionaries(
    {},
    optional={
        "threshold": st.fixed_dictionaries(
            {},
            optional={
                "value": st.floats(-1e6, 1e6, allow_nan=False),
                "unit": st.sampled_from(UNITS),
                "operator": st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
            },
        ),
        "tags": st.lists(words, max_size=3),
        "metadata_query": st.dictionaries(
            st.sampled_from(["instrument", "filter_name", "dataset"]), words, max_size=2
        ),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chain=st.lists(st.tuples(partial_bodies, st.booleans()), min_size=1, max_size=5),
    spec_body=partial_bodies,
)
def test_resolved_spec_equals_a_plain_merge_of_its_chain(
    chain: list[tuple[dict[str, Any], bool]], spec_body: dict[str, Any]
) -> None:
    """Random partial chains, some partials in another file: the spec is the chain merged in order."""
    root_doc = {"metric": "AM1", "threshold": {"value": 1.0, "unit": "mas", "operator": "<"}}
    bodies = [root_doc] + [body for body, _ in chain]
    in_other_file = [False] + [other for _, other in chain]
    files: dict[str, list[dict[str, Any]]] = {"AM1": [], "common": []}
    for i, (body, other) in enumerate(zip(bodies, in_other_file)):
        doc: dict[str, Any] = {"id": f"p{i}", **copy.deepcopy(body)}
        if i:
            doc["base"] = f"{'common' if in_other_file[i - 1] else 'AM1'}#p{i - 1}"
        files["common" if other else "AM1"].append(doc)
    last = len(bodies) - 1
    spec = {"name": "design", "base": f"{'common' if in_other_file[last] else 'AM1'}#p{last}", **spec_body}
    files["AM1"].append(spec)
    with tempfile.TemporaryDirectory() as tmp:
        for name, docs in files.items():
            path = Path(tmp) / "specs" / "pkg" / f"{name}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        resolved = SpecificationSet.load(tmp)["pkg.AM1.design"]
    expected = reference_merge([*bodies, spec_body])
    assert resolved.threshold.model_dump() == expected["threshold"]
    assert set(resolved.tags) == set(expected.get("tags", []))
    assert resolved.metadata_query == expected.get("metadata_query", {})
    assert resolved.level == "design"


@settings(deadline=None)
@given(a=partial_bodies, b=partial_bodies)
def test_merge_documents_never_modifies_its_inputs(a: dict[str, Any], b: dict[str, Any]) -> None:
    before = (copy.deepcopy(a), copy.deepcopy(b))
    assert merge_documents(a, b) == reference_merge([a, b])
    assert (a, b) == before


def test_declarations_written_back_read_the_same(tmp_path: Path) -> None:
    metrics = MetricSet.load(PACKAGE)
    specs = SpecificationSet.load(PACKAGE, metrics)
    for package, doc in metrics.to_yaml_files().items():
        write(tmp_path, {f"metrics/{package}.yaml": yaml.safe_dump(doc, sort_keys=False)})
    flat = tmp_path / "specs" / "validate_drp" / "all.yaml"
    flat.parent.mkdir(parents=True)
    flat.write_text(yaml.safe_dump_all(specs.to_yaml_documents(), sort_keys=False))
    again = MetricSet.load(tmp_path)
    assert [m.model_dump() for m in again] == [m.model_dump() for m in metrics]
    specs_again = SpecificationSet.load(tmp_path, again)
    assert [s.model_dump() for s in specs_again] == [specs[n].model_dump() for n in specs_again.names]
    assert specs_again.names == specs.names


# ---------------------------------------------------------------- Job JSON


def test_a_job_file_reads_into_records() -> None:
    job = read_job(JOB, MetricSet.load(PACKAGE))
    records = job.records()
    assert [r.metric for r in records] == ["validate_drp.AM1", "validate_drp.PA1", "validate_drp.PF1"]
    am1 = records[0]
    assert am1.quantity == 12.84 * u.mas and am1.identifier == "5c8b0b4a0f7e4a0c9d3f3c1d2e4a6b70"
    assert set(am1.blobs) == {"validate_drp.AM1", "MatchedMultiVisitDataset"}
    assert am1.blobs["validate_drp.AM1"].data["D"].unit == "arcmin"
    assert am1.packages["validate_drp"]["git_commit"] == "3e5f2a1" and am1.env["ci_id"] == "1234"
    assert records[2].quantity.unit == u.dimensionless_unscaled
    specs = SpecificationSet.load(PACKAGE)
    applicable = specs.applicable("validate_drp.PA1", job.meta)
    assert [s.short_name for s in applicable] == ["minimum_gri", "design_gri", "stretch_gri"]
    assert [s.check(records[1].quantity) for s in applicable] == [True, False, False]


def test_a_job_file_is_written_back_as_it_was(tmp_path: Path) -> None:
    job = read_job(JOB)
    out = write_job(job, tmp_path / "out" / "job.verify.json")
    assert json.loads(out.read_text()) == json.loads(JOB.read_text())
    assert read_job(out) == job
    assert list(tmp_path.joinpath("out").iterdir()) == [out]  # no temporary file left


def bad_job(**changes: Any) -> dict[str, Any]:
    data = json.loads(JOB.read_text())
    for path, value in changes.items():
        node = data
        keys = path.split("__")
        for key in keys[:-1]:
            node = node[int(key) if key.isdigit() else key]
        if value is ...:
            del node[int(keys[-1]) if keys[-1].isdigit() else keys[-1]]
        else:
            node[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value
    return data


@pytest.mark.parametrize(
    ("changes", "document", "field", "text"),
    [
        ({"measurements__1__unit": ...}, "measurements[1]", "unit", "is missing"),
        ({"measurements__0__metric": ...}, "measurements[0]", "metric", "is missing"),
        ({"measurements": ...}, "job", "measurements", "is missing"),
        ({"blobs__0__identifier": ...}, "blobs[0]", "identifier", "is missing"),
        ({"measurements__1__value": math.nan}, "measurements[1] (validate_drp.PA1)", "value", "nan"),
        ({"measurements__1__value": None}, "measurements[1] (validate_drp.PA1)", "value", "no value"),
        ({"measurements__0__unit": "mag"}, "measurements[0] (validate_drp.AM1)", "unit", "incompatible"),
        (
            {"measurements__0__unit": "marcsecs"},
            "measurements[0] (validate_drp.AM1)",
            "unit",
            "not an astropy unit",
        ),
        (
            {"measurements__2__metric": "validate_drp.PF2"},
            "measurements[2] (validate_drp.PF2)",
            "metric",
            "PF1",
        ),
        (
            {"measurements__2__blob_refs": ["nope"]},
            "measurements[2] (validate_drp.PF1)",
            "blob_refs[0]",
            "'nope'",
        ),
        ({"measurements__0__value": "twelve"}, "measurements[0]", "value", "'twelve'"),
    ],
)
def test_bad_job_files_name_file_document_and_field(
    tmp_path: Path, changes: dict[str, Any], document: str, field: str, text: str
) -> None:
    path = tmp_path / "bad.verify.json"
    path.write_text(json.dumps(bad_job(**changes)))
    with pytest.raises(JobFormatError) as info:
        read_job(path, MetricSet.load(PACKAGE))
    (problem,) = info.value.problems
    assert problem.file.endswith("bad.verify.json")
    assert (problem.document, problem.field) == (document, field)
    assert text in problem.problem
    assert f"bad.verify.json: {document}: field '{field}'" in str(info.value)


def test_a_job_unit_is_checked_against_its_own_metrics_without_a_metric_set() -> None:
    with pytest.raises(JobFormatError, match=r"measurements\[0\].*'mag'.*incompatible.*'marcsec'"):
        job_from_dict(bad_job(measurements__0__unit="mag"), "job.json")


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "measurements": [\n    {"metric": }\n  ]\n}\n')
    with pytest.raises(JobFormatError) as info:
        read_job(path)
    assert info.value.problems[0].line == 3 and "not valid JSON" in info.value.problems[0].problem


finite = st.floats(-1e12, 1e12, allow_nan=False)
hexes = st.text("0123456789abcdef", min_size=32, max_size=32)
datums = st.fixed_dictionaries(
    {
        "value": st.one_of(finite, st.lists(finite, max_size=3), words),
        "unit": st.sampled_from(["", "mag", "arcmin"]),
        "label": words,
        "description": st.text(max_size=20),
    }
)


@st.composite
def jobs(draw: st.DrawFn) -> dict[str, Any]:
    blobs = draw(
        st.lists(
            st.fixed_dictionaries(
                {"identifier": hexes, "name": words, "data": st.dictionaries(words, datums, max_size=3)}
            ),
            max_size=3,
            unique_by=lambda b: b["identifier"],
        )
    )
    ids = [b["identifier"] for b in blobs]
    metric_units = {"pkg.AM1": ["marcsec", "arcsec", "mas"], "pkg.PA1": ["mmag", "mag"], "pkg.PF1": [""]}
    measurements = []
    for _ in range(draw(st.integers(0, 5))):
        metric = draw(st.sampled_from(sorted(metric_units)))
        measurements.append(
            {
                "metric": metric,
                "identifier": draw(hexes),
                "value": draw(finite),
                "unit": draw(st.sampled_from(metric_units[metric])),
                "blob_refs": draw(st.lists(st.sampled_from(ids), unique=True)) if ids else [],
            }
        )
    meta = {
        "packages": draw(st.dictionaries(words, st.fixed_dictionaries({"name": words, "git_commit": hexes}))),
        "env": draw(st.dictionaries(words, st.one_of(words, st.integers()), max_size=3)),
        **draw(st.dictionaries(st.sampled_from(["instrument", "filter_name"]), words)),
    }
    return {"measurements": measurements, "blobs": blobs, "metrics": [], "specs": [], "meta": meta}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=jobs())
def test_job_json_round_trips(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.verify.json"
        path.write_text(json.dumps(data))
        job = read_job(path)
        out = write_job(job, Path(tmp) / "out.verify.json")
        assert json.loads(out.read_text()) == data
        again = read_job(out)
    assert again == job
    assert [(r.metric, r.value, r.unit, sorted(r.blobs)) for r in again.records()] == [
        (
            m["metric"],
            m["value"],
            m["unit"],
            sorted({b["name"] for b in data["blobs"] if b["identifier"] in m["blob_refs"]}),
        )
        for m in data["measurements"]
    ]


# ---------------------------------------------------------------- lint and the CLI


def test_lint_of_the_example_package_is_clean() -> None:
    report = lint([PACKAGE])
    assert report.ok and report.summary() == "ok: 3 metrics, 7 specifications"
    result = runner.invoke(app, ["verify", "lint", str(PACKAGE)])
    assert result.exit_code == 0, result.output
    assert "ok: 3 metrics, 7 specifications" in result.output


def test_lint_reports_every_problem_with_a_fix(tmp_path: Path) -> None:
    root = write(
        tmp_path / "pkg",
        {
            "metrics/pkg.yaml": METRICS_YAML + "  alert: {level: stretch}\n",
            "specs/pkg/PA1.yaml": """
            name: design
            metric: PA1
            base: "#PA1-base"
            ---
            name: minimum
            metric: PA1
            treshold: {value: 1, unit: mmag, operator: "<"}
            """,
        },
    )
    report = lint([root])
    assert not report.ok
    problems = {(p.document, p.field): p for p in report.problems}
    assert "Did you mean 'threshold'" in problems[("pkg.PA1.minimum", "treshold")].fix
    assert "no spec at that level" in problems[("pkg.PA1", "alert.level")].problem
    assert problems[("pkg.PA1.design", "base")].line == 3
    result = runner.invoke(app, ["verify", "lint", str(root), "--json"])
    assert result.exit_code == 1
    out = json.loads(result.output)
    assert out["ok"] is False and len(out["problems"]) == len(report.problems)
    assert {"file", "line", "document", "field", "problem", "fix"} == set(out["problems"][0])
    # The table's cells wrap at the console's width (80 columns under CI), so only its title is matched here;
    # the JSON above holds every field.
    table = runner.invoke(app, ["verify", "lint", str(root)])
    assert table.exit_code == 1 and f"{len(report.problems)} problems in" in table.output


def test_lint_of_single_files_and_jobs(tmp_path: Path) -> None:
    assert lint([PACKAGE / "metrics" / "validate_drp.yaml"]).summary() == "ok: 3 metrics, 0 specifications"
    assert (
        lint([PACKAGE / "specs" / "validate_drp" / "AM1.yaml"]).summary() == "ok: 0 metrics, 3 specifications"
    )
    assert lint([JOB]).summary() == "ok: 0 metrics, 0 specifications, 1 jobs"
    broken = tmp_path / "job.verify.json"
    shutil.copy(JOB, broken)
    broken.write_text(json.dumps(bad_job(measurements__0__value=math.nan)))
    report = lint([broken, tmp_path / "missing.yaml"])
    assert [(p.document, p.field) for p in report.problems] == [
        ("measurements[0] (validate_drp.AM1)", "value"),
        (str(tmp_path / "missing.yaml"), None),
    ]
    result = runner.invoke(app, ["verify", "lint", str(broken)])
    assert result.exit_code == 1


def test_verify_help() -> None:
    result = runner.invoke(app, ["verify", "lint", "--help"])
    assert result.exit_code == 0 and "metrics/PACKAGE.yaml" in result.output


def test_lint_checks_the_alert_channels_against_alerts_yaml(tmp_path: Path) -> None:
    package = tmp_path / "validate_drp"
    shutil.copytree(PACKAGE, package)
    assert lint([package]).ok  # ${DM_ALERTS_WEBHOOK} need not be set to lint
    metrics_file = package / "metrics" / "validate_drp.yaml"
    metrics_file.write_text(metrics_file.read_text().replace("webhook:dm-alerts", "webhook:dm-alert"))
    report = lint([package])
    assert [(p.document, p.field) for p in report.problems] == [("validate_drp.AM1", "alert.channels")]
    assert "'dm-alert' is not configured" in report.problems[0].problem
    (package / "alerts.yaml").write_text("webhooks: [not, a, mapping]\n")
    assert any("alerts.yaml" in p.file for p in lint([package]).problems)
