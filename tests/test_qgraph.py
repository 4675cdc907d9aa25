"""Quantum graphs: built with set-based queries on a generated survey, saved and loaded, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy

from conftest import DRP_YAML, SURVEY_INPUTS
from porter import Butler, Timespan
from porter.errors import MissingCollectionError, QuantumGraphBuildError
from porter.pipeline import InProcessExecutor, Pipeline, QuantumGraph, build_quantum_graph, execute_graph

RUN = "u/test/drp"


def build(butler: Butler, selection: str = "", **kwargs: object) -> QuantumGraph:
    pipe = Pipeline.from_uri(f"{DRP_YAML}#{selection}" if selection else DRP_YAML)
    kwargs.setdefault("collections", SURVEY_INPUTS)
    kwargs.setdefault("run", RUN)
    return build_quantum_graph(butler, pipe, **kwargs)  # type: ignore[arg-type]


def distinct(butler: Butler, dims: list[str], keys: list[str]) -> set[tuple]:
    rows = butler.query_data_ids(dims, datasets="raw", collections="SynthCam/raw/all", skymap="synth_skymap")
    return {tuple(r[k] for k in keys) for r in rows}


def test_quanta_follow_the_repository(survey: tuple[Butler, object]) -> None:
    butler, _ = survey
    graph = build(butler)
    tasks = graph.summary()["tasks"]
    raws = butler.query_datasets("raw", "SynthCam/raw/all")
    assert tasks["isr"] == len(raws)
    visit_detectors = {
        (r["visit"], r["detector"])
        for r in butler.query_data_ids(["visit", "detector"], datasets="raw", collections="SynthCam/raw/all")
    }
    assert tasks["calibrate"] == len(visit_detectors)
    assert tasks["consolidateVisit"] == len({v for v, _ in visit_detectors})
    assert tasks["makeCoadd"] == len(
        distinct(butler, ["patch", "band", "visit", "detector"], ["patch", "band"])
    )
    assert (
        tasks["detectObjects"]
        == tasks["truthMatch"]
        == len(distinct(butler, ["patch", "visit", "detector"], ["patch"]))
    )
    assert tasks["forcedPhot"] == len(distinct(butler, ["patch", "visit", "detector"], ["visit", "detector"]))
    assert tasks["repeatability"] == 1
    # Gathers: each coadd reads exactly the calexps whose detector overlaps its patch, in its band.
    overlaps = butler.query_data_ids(
        ["patch", "visit", "detector"], skymap="synth_skymap", datasets="raw", collections="SynthCam/raw/all"
    )
    for q in graph.quanta:
        if q.task == "makeCoadd":
            want = {
                (o["visit"], o["detector"])
                for o in overlaps
                if o["patch"] == q.data_id["patch"] and o["band"] == q.data_id["band"]
            }
            got = {(r.data_id["visit"], r.data_id["detector"]) for r in q.inputs["calexps"]}
            assert got == want
        if q.task == "isr":
            (bias,) = q.prerequisites["bias"]
            assert bias.data_id["detector"] == q.data_id["detector"]
        if q.task == "calibrate":
            assert q.prerequisites["ref_cat"], "every detector is covered by the reference catalog"
    # Every input of a quantum is either in the repository or made by an earlier quantum.
    made: set[str] = set()
    for q in graph.quanta:
        for r in q.all_inputs():
            assert r.id_hex in made or butler.get_dataset(r.id) is not None
        made.update(r.id_hex for r in q.all_outputs())


def test_where_restricts_and_save_load_round_trips(survey: tuple[Butler, object], tmp_path: Path) -> None:
    butler, _ = survey
    graph = build(butler, "step1", where="band = 'r' AND detector IN (0, 1)")
    assert graph.quanta
    assert {q.data_id["band"] for q in graph.quanta} == {"r"}
    assert {q.data_id["detector"] for q in graph.quanta} == {0, 1}
    graph.save(tmp_path / "g.qgraph")
    again = QuantumGraph.load(tmp_path / "g.qgraph", butler.dimensions)
    assert [q.id for q in again.quanta] == [q.id for q in graph.quanta]
    for a, b in zip(again.quanta, graph.quanta):
        assert a.data_id == b.data_id and dict(a.data_id.mapping) == dict(b.data_id.mapping)
        for name in b.inputs:
            assert [r.id_hex for r in a.inputs[name]] == [r.id_hex for r in b.inputs[name]]
            assert [r.data_id for r in a.inputs[name]] == [r.data_id for r in b.inputs[name]]
        assert [r.id_hex for r in a.all_outputs()] == [r.id_hex for r in b.all_outputs()]
    assert again.summary() == graph.summary()


def test_queries_do_not_scale_with_quanta(survey: tuple[Butler, object]) -> None:
    """Set-based: the number of SQL statements is the same for 1 band as for all of them."""
    butler, _ = survey
    counts = []
    for where in ("band = 'g' AND detector = 0", ""):
        n = [0]

        def count(*_args: object, n: list[int] = n) -> None:
            n[0] += 1

        sqlalchemy.event.listen(butler.registry.db.engine, "before_cursor_execute", count)
        try:
            graph = build(butler, "step1,step2", where=where)
        finally:
            sqlalchemy.event.remove(butler.registry.db.engine, "before_cursor_execute", count)
        counts.append((len(graph), n[0]))
    (small, small_sql), (big, big_sql) = counts
    assert big > 4 * small
    assert big_sql <= small_sql + 2


def test_skip_existing_and_extend_run(survey: tuple[Butler, object]) -> None:
    butler, _ = survey
    step1 = build(butler, "step1", where="detector = 0")
    summary = execute_graph(butler, step1, InProcessExecutor())
    assert summary.ok
    with pytest.raises(QuantumGraphBuildError, match=r"already exists and holds datasets.*--extend-run"):
        build(butler, "step1")
    with pytest.raises(QuantumGraphBuildError, match=r"already exists in run.*--skip-existing-in"):
        build(butler, "step1", extend_run=True)
    again = build(butler, "step1", extend_run=True, skip_existing_in=[RUN])
    assert again.metadata["skipped"] == {"isr": len(step1) // 2, "calibrate": len(step1) // 2}
    assert all(q.data_id["detector"] != 0 for q in again.quanta)
    clobbered = build(butler, "step1", extend_run=True, clobber_outputs=True)
    assert len(clobbered.clobber) == sum(len(list(q.all_outputs())) for q in step1.quanta)
    # The next step reads step 1's outputs from the run itself.
    step2 = build(butler, "step2", extend_run=True)
    assert step2.summary()["tasks"] == {
        "consolidateVisit": len({q.data_id["visit"] for q in step1.quanta if q.task == "calibrate"})
    }
    # A quantum interrupted between its writes (one of calibrate's three outputs gone): skipping finished
    # work is not enough, and the error says what is; with --clobber-outputs only that quantum is redone.
    partial = next(q for q in step1.quanta if q.task == "calibrate")
    [src] = [r for r in partial.all_outputs() if r.dataset_type.name == "src"]
    butler.prune_datasets([src], purge=True, unstore=True)
    with pytest.raises(
        QuantumGraphBuildError, match=r"2 of its 3 outputs are in run .*Add --clobber-outputs"
    ):
        build(butler, "step1", extend_run=True, skip_existing_in=[RUN])
    redo = build(butler, "step1", extend_run=True, skip_existing_in=[RUN], clobber_outputs=True)
    assert [q.data_id for q in redo.quanta if q.data_id["detector"] == 0] == [partial.data_id]
    assert len(redo.clobber) == 2


def test_missing_prerequisite_names_task_and_data_id(survey: tuple[Butler, object]) -> None:
    butler, _ = survey
    biases = butler.query_datasets("bias", "SynthCam/calib")
    butler.registry.decertify("SynthCam/calib", "bias", Timespan(None, None), data_ids=[biases[0].data_id])
    with pytest.raises(
        QuantumGraphBuildError,
        match=rf"Task 'isr', data ID .*'detector': {biases[0].data_id['detector']}.*no prerequisite 'bias' valid at its",
    ):
        build(butler, "step1")


def test_bad_inputs(survey: tuple[Butler, object]) -> None:
    butler, _ = survey
    with pytest.raises(MissingCollectionError, match="'SynthCam/nope' does not exist"):
        build(butler, "step1", collections=["SynthCam/nope"])
    with pytest.raises(QuantumGraphBuildError, match="No data found"):
        build(butler, "step1", where="visit = 999999")
    with pytest.raises(
        QuantumGraphBuildError, match=r"'calexp' .*not registered.*no task of the pipeline writes it"
    ):
        build(butler, "step3")
