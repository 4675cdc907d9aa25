"""Pipeline YAML: tasks, config overrides, parameters, imports, subsets as steps, validation errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import DRP_YAML
from porter.errors import PipelineDefinitionError
from porter.pipeline import Pipeline


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_drp_reads_with_steps_in_order() -> None:
    pipe = Pipeline.from_uri(DRP_YAML)
    assert [s.label for s in pipe.steps()] == ["step1", "step2", "step3", "step4"]
    labels = list(pipe.tasks)
    # Producers come before consumers.
    assert (
        labels.index("isr")
        < labels.index("calibrate")
        < labels.index("makeCoadd")
        < labels.index("forcedPhot")
    )
    assert pipe.tasks["calibrate"].config.detection_threshold == pipe.parameters["detection_threshold"]  # type: ignore[attr-defined]
    assert pipe.steps()[0].sharding_dimensions == ("instrument", "visit", "detector")


def test_fragment_selects_a_step_or_labels() -> None:
    step1 = Pipeline.from_uri(f"{DRP_YAML}#step1")
    assert list(step1.tasks) == ["isr", "calibrate"]
    two = Pipeline.from_uri(f"{DRP_YAML}#step2,makeCoadd")
    assert set(two.tasks) == {"consolidateVisit", "makeCoadd"}
    with pytest.raises(PipelineDefinitionError, match=r"'stepp1'.*Did you mean 'step1'"):
        Pipeline.from_uri(f"{DRP_YAML}#stepp1")


def test_imports_override_config_and_exclude(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mine.yaml",
        f"""
        description: mine
        imports:
          - location: {DRP_YAML}
            exclude: [repeatability]
        parameters:
          detection_threshold: 7.5
        tasks:
          calibrate:
            config:
              background_box: 32
        """,
    )
    pipe = Pipeline.from_uri(path)
    assert "repeatability" not in pipe.tasks
    cal = pipe.tasks["calibrate"].config
    assert cal.background_box == 32  # type: ignore[attr-defined]
    assert cal.detection_threshold == 7.5  # type: ignore[attr-defined]  # the importer's parameter wins


def test_connection_rename(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        tasks:
          stats:
            class: pipeline_tasks.ImageStatsTask
            connections:
              stats: rawStats_v2
        """,
    )
    pipe = Pipeline.from_uri(path)
    assert pipe.producers() == {"rawStats_v2": "stats"}
    assert Pipeline.from_dict(pipe.to_dict()).producers() == {"rawStats_v2": "stats"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "tasks:\n  a: pipeline_tasks.NoSuchTask\n",
            r"task 'a': module pipeline_tasks has no class 'NoSuchTask'",
        ),
        ("tasks:\n  a: nosuchmodule.Task\n", r"task 'a': cannot import module 'nosuchmodule'"),
        ("tasks:\n  a: ImageStatsTask\n", r"full dotted path"),
        (
            "taks:\n  a: pipeline_tasks.ImageStatsTask\n",
            r"unknown top-level key 'taks'.*Did you mean 'tasks'",
        ),
        (
            "tasks:\n  a:\n    class: pipeline_tasks.ImageStatsTask\n    config:\n      sleeep: 1\n",
            r"Bad config for task 'a'.*sleeep.*config fields are: fail_detector, fail_marker, flaky_dir, sleep",
        ),
        (
            "tasks:\n  a:\n    class: pipeline_tasks.ImageStatsTask\n    config:\n      sleep: soon\n",
            r"Bad config for task 'a'.*sleep",
        ),
        (
            "tasks:\n  a: pipeline_tasks.ImageStatsTask\n  b: pipeline_tasks.ImageStatsTask\n",
            r"'rawStats' is written by both task 'a' and task 'b'",
        ),
        (
            "parameters: {x: 1}\ntasks:\n  a:\n    class: pipeline_tasks.ImageStatsTask\n    config: {sleep: parameters.y}\n",
            r"no parameter 'y'",
        ),
        (
            "tasks:\n  a: pipeline_tasks.ImageStatsTask\nsubsets:\n  step1: [a, b]\n",
            r"subset 'step1' names task 'b'",
        ),
        (
            "tasks:\n  a:\n    klass: pipeline_tasks.ImageStatsTask\n",
            r"unknown key 'klass'.*Did you mean 'class'",
        ),
        ("- just\n- a list\n", r"must be a YAML mapping"),
        ("tasks: [\n", r"does not parse"),
    ],
)
def test_bad_pipelines_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PipelineDefinitionError, match=message):
        Pipeline.from_uri(write(tmp_path, "bad.yaml", text))


def test_cycle_names_the_tasks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cycle.yaml",
        """
        tasks:
          a:
            class: pipeline_tasks.ImageStatsTask
            connections: {raw: visitStatsRaw}
          b:
            class: pipeline_tasks.ImageStatsTask
            connections: {raw: rawStats, stats: visitStatsRaw}
        """,
    )
    with pytest.raises(PipelineDefinitionError, match=r"cycle: .*a.*b|cycle: .*b.*a"):
        Pipeline.from_uri(path)


def test_inconsistent_dimensions_name_both_tasks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "dims.yaml",
        """
        tasks:
          stats: pipeline_tasks.ImageStatsTask
          visit:
            class: pipeline_tasks.VisitStatsTask
            connections: {summary: rawStats_visit}
          other:
            class: pipeline_tasks.VisitStatsTask
            connections: {stats: rawStats_visit, summary: visitStats2}
        """,
    )
    with pytest.raises(
        PipelineDefinitionError, match=r"'rawStats_visit' has dimensions .* in task 'visit'.* in task 'other'"
    ):
        Pipeline.from_uri(path)


def test_missing_file() -> None:
    with pytest.raises(PipelineDefinitionError, match="does not exist"):
        Pipeline.from_uri("/no/such/pipeline.yaml#step1")


def test_task_graph_pictures() -> None:
    pipe = Pipeline.from_uri(DRP_YAML)
    mermaid = pipe.mermaid()
    assert mermaid.startswith("flowchart TD")
    assert "ds_calexp([calexp]) --> makeCoadd" in mermaid
    dot = pipe.graphviz()
    assert '"calibrate" -> "calexp";' in dot and dot.strip().endswith("}")


@settings(max_examples=40, deadline=None)
@given(
    threshold=st.floats(min_value=0.5, max_value=50, allow_nan=False),
    box=st.integers(min_value=8, max_value=512),
    labels=st.lists(
        st.sampled_from(["isr", "calibrate", "consolidateVisit", "makeCoadd"]), min_size=1, unique=True
    ),
)
def test_round_trip_keeps_configs_and_subsets(threshold: float, box: int, labels: list[str]) -> None:
    """to_dict → from_dict (what a saved graph holds) reproduces every task's config and the subsets."""
    pipe = Pipeline.from_dict(
        {
            "parameters": {"t": threshold},
            "tasks": {
                "isr": "porter.demo.drp.IsrTask",
                "calibrate": {
                    "class": "porter.demo.drp.CalibrateTask",
                    "config": {"detection_threshold": "parameters.t", "background_box": box},
                },
                "consolidateVisit": "porter.demo.drp.ConsolidateVisitTask",
                "makeCoadd": "porter.demo.drp.MakeCoaddTask",
            },
            "subsets": {"mine": labels},
        }
    )
    again = Pipeline.from_dict(pipe.to_dict())
    assert list(again.tasks) == list(pipe.tasks)
    for label, t in pipe.tasks.items():
        assert again.tasks[label].config == t.config
        assert again.tasks[label].config_hash == t.config_hash
    assert again.subsets["mine"].tasks == labels
    assert set(again.select("mine").tasks) == set(labels)
