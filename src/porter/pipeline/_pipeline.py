"""Pipeline YAML: tasks with config overrides, parameters, imports, and named subsets used as steps.

The format is Rubin's, so an existing pipeline file reads naturally::

    description: Mini data-release production
    instrument: SynthCam                        # constrains every graph (a class path's last part also works)
    parameters:
      threshold: 5.0
    imports:
      - location: common.yaml
        exclude: [makeWarp]
    tasks:
      isr: porter.demo.drp.IsrTask              # short form
      calibrate:
        class: porter.demo.drp.CalibrateTask
        config:
          detection_threshold: parameters.threshold
        connections:                            # read/write other dataset types
          sources: src_v2
    subsets:
      step1:
        subset: [isr, calibrate]
        description: per-detector processing
    steps:                                      # optional: run order and sharding
      - label: step1
        sharding_dimensions: instrument, visit, detector
    reports:                                    # optional: notebooks published once a run's quanta are done
      - notebook: ../reports/metrics_report.ipynb   # relative to this file, or resource://package/path
        parameters: {max_points: 20}

``Pipeline.from_uri("drp.yaml#step1")`` selects a subset (or task labels,
comma-separated), as ``pipetask -p drp.yaml#step1`` does.
"""

from __future__ import annotations

import graphlib
import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import PipelineDefinitionError, did_you_mean
from ._connections import Connection, Input, Output, PrerequisiteInput
from ._metrics import MetricsDef, read_metrics
from ._reports import ReportDef, merge_reports, read_reports
from ._task import Task, TaskConfig, config_hash

__all__ = ["Pipeline", "StepDef", "TaskDef"]

_TOP_KEYS = {
    "description",
    "instrument",
    "parameters",
    "imports",
    "tasks",
    "subsets",
    "steps",
    "contracts",
    "reports",
    "metrics",
}
_TASK_KEYS = {"class", "config", "connections"}


@dataclass
class TaskDef:
    """One task of a pipeline: its label, class, validated config and (possibly renamed) connections."""

    label: str
    task_class: type[Task]
    config: TaskConfig
    connections: dict[str, Connection]

    @property
    def class_name(self) -> str:
        return f"{self.task_class.__module__}.{self.task_class.__qualname__}"

    @property
    def dimensions(self) -> tuple[str, ...]:
        return self.task_class.dimensions

    @property
    def config_hash(self) -> str:
        return config_hash(self.task_class, self.config)

    def of_kind(self, kind: type[Connection]) -> dict[str, Connection]:
        return {n: c for n, c in self.connections.items() if type(c) is kind}

    @property
    def inputs(self) -> dict[str, Connection]:
        return self.of_kind(Input)

    @property
    def prerequisites(self) -> dict[str, Connection]:
        return self.of_kind(PrerequisiteInput)

    @property
    def outputs(self) -> dict[str, Connection]:
        return self.of_kind(Output)

    def make_task(self) -> Task:
        return self.task_class(self.config.model_copy(deep=True), self.label)

    def to_dict(self) -> dict[str, Any]:
        renamed = {
            n: c.dataset_type
            for n, c in self.connections.items()
            if self.task_class.connections[n].dataset_type != c.dataset_type
        }
        out: dict[str, Any] = {"class": self.class_name, "config": self.config.model_dump(mode="json")}
        if renamed:
            out["connections"] = renamed
        return out


@dataclass
class StepDef:
    """A named subset of tasks, run as one step with a sequence point after it."""

    label: str
    tasks: list[str]
    description: str = ""
    sharding_dimensions: tuple[str, ...] = ()


@dataclass
class Pipeline:
    """A validated set of tasks in dependency order, with its subsets.

    Build one with `from_uri`, `from_yaml` or `from_dict`; construction
    validates everything that can be checked without a repository.
    """

    tasks: dict[str, TaskDef]
    subsets: dict[str, StepDef] = field(default_factory=dict)
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    step_order: list[str] = field(default_factory=list)
    instrument: str | None = None
    """The instrument the pipeline is configured for: its name constrains every graph (as pipetask does)."""
    reports: list[ReportDef] = field(default_factory=list)
    """Notebooks published for every run once its quanta are done (the ``reports:`` section)."""
    metrics: MetricsDef | None = None
    """The metrics package every run's measurements are recorded against (the ``metrics:`` section)."""

    def __post_init__(self) -> None:
        self.tasks = {label: self.tasks[label] for label in _task_order(self.tasks)}

    # --- loading -------------------------------------------------------------------------------

    @classmethod
    def from_uri(cls, uri: str | Path) -> Pipeline:
        """Load ``path.yaml`` or ``path.yaml#step1`` (subset names or task labels, comma-separated)."""
        text = str(uri)
        path_text, _, selection = text.partition("#")
        pipeline = cls.from_file(Path(path_text))
        return pipeline.select(selection) if selection else pipeline

    @classmethod
    def from_file(cls, path: Path) -> Pipeline:
        return cls.from_dict(_read_yaml(path), base=path.parent, source=str(path))

    @classmethod
    def from_yaml(cls, text: str, base: Path | None = None) -> Pipeline:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PipelineDefinitionError(f"The pipeline YAML does not parse: {exc}") from None
        return cls.from_dict(data, base=base or Path.cwd(), source="<yaml>")

    @classmethod
    def from_dict(
        cls, data: Any, base: Path | None = None, source: str = "<dict>", *, check_reports: bool = True
    ) -> Pipeline:
        """A pipeline from its YAML's mapping; paths (imports, report notebooks) are relative to ``base``.

        ``check_reports=False`` checks the ``reports:`` section's shape but not its notebooks (they
        must exist and declare their parameters otherwise): for a pipeline read back from a graph.
        """
        raw = _merge_imports(data, base or Path.cwd(), source, seen=(), check_reports=check_reports)
        parameters = dict(raw.get("parameters") or {})
        tasks = {
            label: _make_task_def(label, entry, parameters, source) for label, entry in raw["tasks"].items()
        }
        subsets = _read_subsets(raw.get("subsets") or {}, tasks, source)
        step_order = _read_steps(raw.get("steps") or [], subsets, source)
        instrument = raw.get("instrument")
        return cls(
            tasks,
            subsets,
            str(raw.get("description") or ""),
            parameters,
            step_order,
            str(instrument).rsplit(".", 1)[-1] if instrument else None,
            list(raw.get("reports") or []),
            raw.get("metrics"),
        )

    # --- selection -------------------------------------------------------------------------------

    def select(self, selection: str) -> Pipeline:
        """The pipeline reduced to the named subsets and/or task labels (``"step1,step2"``)."""
        labels: list[str] = []
        for name in (s.strip() for s in selection.split(",")):
            if not name:
                continue
            if name in self.subsets:
                labels.extend(self.subsets[name].tasks)
            elif name in self.tasks:
                labels.append(name)
            else:
                raise PipelineDefinitionError(
                    f"{name!r} is neither a subset nor a task label of this pipeline."
                    + did_you_mean(name, [*self.subsets, *self.tasks], "subsets and tasks")
                )
        chosen = set(labels)
        subsets = {n: s for n, s in self.subsets.items() if set(s.tasks) <= chosen}
        return Pipeline(
            {label: t for label, t in self.tasks.items() if label in chosen},
            subsets,
            self.description,
            self.parameters,
            [s for s in self.step_order if s in subsets],
            self.instrument,
            list(self.reports),
            self.metrics,
        )

    def steps(self) -> list[StepDef]:
        """The steps in run order: the ``steps:`` section, else subsets named ``step…`` in natural order."""
        if self.step_order:
            return [self.subsets[s] for s in self.step_order]
        names = sorted((n for n in self.subsets if n.startswith("step")), key=_natural_key)
        return [self.subsets[n] for n in names]

    # --- what the graph builder asks -----------------------------------------------------------------

    def producers(self) -> dict[str, str]:
        """Dataset type name → label of the task that writes it."""
        return {c.dataset_type: t.label for t in self.tasks.values() for c in t.outputs.values()}

    def dataset_type_connections(self) -> dict[str, list[tuple[str, Connection]]]:
        """Dataset type name → every (task label, connection) that reads or writes it."""
        out: dict[str, list[tuple[str, Connection]]] = {}
        for t in self.tasks.values():
            for c in t.connections.values():
                out.setdefault(c.dataset_type, []).append((t.label, c))
        return out

    def to_dict(self) -> dict[str, Any]:
        """A self-contained description (configs resolved, no imports) that `from_dict` reads back."""
        return {
            "description": self.description,
            **({"instrument": self.instrument} if self.instrument else {}),
            "parameters": self.parameters,
            "tasks": {label: t.to_dict() for label, t in self.tasks.items()},
            "subsets": {
                n: {
                    "subset": list(s.tasks),
                    "description": s.description,
                    **({"sharding_dimensions": list(s.sharding_dimensions)} if s.sharding_dimensions else {}),
                }
                for n, s in self.subsets.items()
            },
            "steps": [{"label": s} for s in self.step_order],
            **({"reports": [r.to_dict() for r in self.reports]} if self.reports else {}),
            **({"metrics": self.metrics.to_dict()} if self.metrics else {}),
        }

    def mermaid(self) -> str:
        """The task graph as a Mermaid flowchart (tasks as boxes, dataset types as rounded nodes)."""
        lines = ["flowchart TD"]
        for t in self.tasks.values():
            lines.append(f'    {_node(t.label)}["{t.label}<br/><small>{t.task_class.__name__}</small>"]')
            for c in [*t.inputs.values(), *t.prerequisites.values()]:
                lines.append(f"    {_node('ds_' + c.dataset_type)}([{c.dataset_type}]) --> {_node(t.label)}")
            for c in t.outputs.values():
                lines.append(f"    {_node(t.label)} --> {_node('ds_' + c.dataset_type)}([{c.dataset_type}])")
        return "\n".join(dict.fromkeys(lines)) + "\n"

    def graphviz(self) -> str:
        """The task graph in Graphviz DOT."""
        lines = ["digraph pipeline {", "  rankdir=TB;", "  node [fontname=Helvetica];"]
        for t in self.tasks.values():
            lines.append(f'  "{t.label}" [shape=box, style=filled, fillcolor="#dde8f8"];')
            for c in [*t.inputs.values(), *t.prerequisites.values()]:
                style = ", style=dashed" if isinstance(c, PrerequisiteInput) else ""
                lines.append(f'  "{c.dataset_type}" [shape=ellipse];')
                lines.append(f'  "{c.dataset_type}" -> "{t.label}" [{style.lstrip(", ")}];')
            for c in t.outputs.values():
                lines.append(f'  "{c.dataset_type}" [shape=ellipse];')
                lines.append(f'  "{t.label}" -> "{c.dataset_type}";')
        lines.append("}")
        return "\n".join(dict.fromkeys(lines)) + "\n"


# --- reading ---------------------------------------------------------------------------------------------


def _read_yaml(path: Path) -> Any:
    if not path.exists():
        raise PipelineDefinitionError(f"Pipeline file {path} does not exist.")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PipelineDefinitionError(f"Pipeline file {path} does not parse as YAML: {exc}") from None


def _merge_imports(
    data: Any, base: Path, source: str, seen: tuple[str, ...], check_reports: bool = True
) -> dict[str, Any]:
    """The pipeline's own dict with every imported pipeline's tasks, subsets and reports merged in (imports first).

    ``reports`` comes back as `ReportDef` objects, each notebook resolved against its own file's directory.
    """
    if not isinstance(data, Mapping):
        raise PipelineDefinitionError(f"{source}: a pipeline must be a YAML mapping with a 'tasks' section.")
    unknown = set(data) - _TOP_KEYS
    for key in sorted(unknown):
        raise PipelineDefinitionError(
            f"{source}: unknown top-level key {key!r}." + did_you_mean(key, _TOP_KEYS, "keys")
        )
    merged: dict[str, Any] = {"tasks": {}, "subsets": {}, "parameters": {}, "steps": [], "reports": []}
    for item in data.get("imports") or []:
        spec = {"location": item} if isinstance(item, str) else dict(item)
        if "location" not in spec:
            raise PipelineDefinitionError(
                f"{source}: an import needs a 'location' (the pipeline file to import)."
            )
        path = (base / str(spec["location"])).resolve()
        if str(path) in seen:
            raise PipelineDefinitionError(f"{source}: imports form a cycle through {path}.")
        imported = _merge_imports(_read_yaml(path), path.parent, str(path), (*seen, str(path)), check_reports)
        include, exclude = spec.get("include"), set(spec.get("exclude") or [])
        for label, entry in imported["tasks"].items():
            if (include is None or label in include) and label not in exclude:
                merged["tasks"][label] = entry
        kept = set(merged["tasks"]) | {
            label
            for label in imported["tasks"]
            if (include is None or label in include) and label not in exclude
        }
        for name, subset in imported["subsets"].items():
            spec = {"subset": subset} if isinstance(subset, list) else dict(subset or {})
            spec["subset"] = [label for label in spec.get("subset") or [] if label in kept]
            merged["subsets"].setdefault(name, spec)
        merged["parameters"].update(imported["parameters"])
        merged["steps"] = merged["steps"] or imported["steps"]
        merged["instrument"] = merged.get("instrument") or imported.get("instrument")
        merged["reports"] = merge_reports(merged["reports"], imported["reports"])
        merged["metrics"] = imported.get("metrics") or merged.get("metrics")
    own_reports = read_reports(data.get("reports"), base, source, check=check_reports)
    own_metrics = read_metrics(data.get("metrics"), base, source, check=check_reports)
    tasks = data.get("tasks")
    if not isinstance(tasks, Mapping) and not merged["tasks"]:
        raise PipelineDefinitionError(f"{source}: the pipeline has no 'tasks' section.")
    for label, entry in (tasks or {}).items():
        entry = {"class": entry} if isinstance(entry, str) else dict(entry or {})
        for key in set(entry) - _TASK_KEYS:
            raise PipelineDefinitionError(
                f"{source}: task {label!r} has unknown key {key!r}." + did_you_mean(key, _TASK_KEYS, "keys")
            )
        previous = merged["tasks"].get(label)
        if previous is not None and entry.get("class", previous["class"]) == previous["class"]:
            entry = {
                "class": previous["class"],
                "config": {**(previous.get("config") or {}), **(entry.get("config") or {})},
                "connections": {**(previous.get("connections") or {}), **(entry.get("connections") or {})},
            }
        if "class" not in entry:
            raise PipelineDefinitionError(f"{source}: task {label!r} has no 'class' (a dotted Python path).")
        merged["tasks"][str(label)] = entry
    merged["subsets"].update(data.get("subsets") or {})
    merged["parameters"].update(data.get("parameters") or {})
    merged["steps"] = data.get("steps") or merged["steps"]
    merged["description"] = data.get("description", "")
    merged["instrument"] = data.get("instrument") or merged.get("instrument")
    merged["reports"] = merge_reports(merged["reports"], own_reports)
    merged["metrics"] = own_metrics or merged.get("metrics")
    return merged


def _import_class(label: str, dotted: str, source: str) -> type[Task]:
    module_name, _, attr = str(dotted).rpartition(".")
    if not module_name:
        raise PipelineDefinitionError(
            f"{source}: task {label!r} has class {dotted!r}; give the full dotted path (package.module.Class)."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PipelineDefinitionError(
            f"{source}: task {label!r}: cannot import module {module_name!r} ({exc}). "
            "Check the spelling, or install the package that provides it."
        ) from None
    cls = getattr(module, attr, None)
    if cls is None:
        names = [n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Task)]
        raise PipelineDefinitionError(
            f"{source}: task {label!r}: module {module_name} has no class {attr!r}."
            + did_you_mean(attr, names, "tasks")
        )
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise PipelineDefinitionError(
            f"{source}: task {label!r}: {dotted} is not a porter.pipeline.Task subclass."
        )
    return cls


def _make_task_def(
    label: str, entry: Mapping[str, Any], parameters: Mapping[str, Any], source: str
) -> TaskDef:
    task_class = _import_class(label, entry["class"], source)
    overrides: dict[str, Any] = {}
    renames = dict(entry.get("connections") or {})
    for key, value in dict(entry.get("config") or {}).items():
        if str(key).startswith("connections."):  # Rubin's spelling of a connection override
            renames[str(key).split(".", 1)[1]] = value
        else:
            overrides[str(key)] = _substitute(value, parameters, label, source)
    connections = dict(task_class.connections)
    for name, dataset_type in renames.items():
        if name not in connections:
            raise PipelineDefinitionError(
                f"{source}: task {label!r} has no connection {name!r} to rename."
                + did_you_mean(name, connections, "connections")
            )
        connections[name] = connections[name].renamed(str(dataset_type))
    config = task_class.make_config(overrides, label)
    return TaskDef(label, task_class, config, connections)


def _substitute(value: Any, parameters: Mapping[str, Any], label: str, source: str) -> Any:
    if isinstance(value, str) and value.startswith("parameters."):
        name = value.split(".", 1)[1]
        if name not in parameters:
            raise PipelineDefinitionError(
                f"{source}: task {label!r} uses {value!r} but the pipeline has no parameter {name!r}."
                + did_you_mean(name, parameters, "parameters")
            )
        return parameters[name]
    if isinstance(value, list):
        return [_substitute(v, parameters, label, source) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, parameters, label, source) for k, v in value.items()}
    return value


def _read_subsets(raw: Mapping[str, Any], tasks: Mapping[str, TaskDef], source: str) -> dict[str, StepDef]:
    out: dict[str, StepDef] = {}
    for name, entry in raw.items():
        spec = {"subset": entry} if isinstance(entry, list) else dict(entry or {})
        labels = [str(x) for x in spec.get("subset") or []]
        for label in labels:
            if label not in tasks:
                raise PipelineDefinitionError(
                    f"{source}: subset {name!r} names task {label!r}, which the pipeline does not have."
                    + did_you_mean(label, tasks, "tasks")
                )
        out[str(name)] = StepDef(
            str(name), labels, str(spec.get("description") or ""), _dims(spec.get("sharding_dimensions"))
        )
    return out


def _read_steps(raw: Iterable[Any], subsets: dict[str, StepDef], source: str) -> list[str]:
    order = []
    for entry in raw:
        spec = {"label": entry} if isinstance(entry, str) else dict(entry)
        label = str(spec.get("label"))
        if label not in subsets:
            raise PipelineDefinitionError(
                f"{source}: step {label!r} is not a subset of the pipeline."
                + did_you_mean(label, subsets, "subsets")
            )
        if spec.get("sharding_dimensions"):
            subsets[label].sharding_dimensions = _dims(spec["sharding_dimensions"])
        order.append(label)
    return order


def _dims(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(str(x).strip() for x in items if str(x).strip())


def _natural_key(name: str) -> tuple[Any, ...]:
    digits = "".join(ch for ch in name if ch.isdigit())
    return (name.rstrip("0123456789"), int(digits) if digits else 0, name)


def _node(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


# --- validation ------------------------------------------------------------------------------------------


def _task_order(tasks: Mapping[str, TaskDef]) -> list[str]:
    """Task labels with every producer before its consumers; refuses inconsistent pipelines."""
    producers: dict[str, str] = {}
    for t in tasks.values():
        for name, c in t.outputs.items():
            if c.dataset_type in producers:
                raise PipelineDefinitionError(
                    f"Dataset type {c.dataset_type!r} is written by both task {producers[c.dataset_type]!r} "
                    f"and task {t.label!r}; each dataset type may be an output of one task only "
                    "(rename one with a 'connections:' override)."
                )
            producers[c.dataset_type] = t.label
            missing = set(c.dimensions) - set(t.dimensions)
            if missing:
                raise PipelineDefinitionError(
                    f"Task {t.label!r}: output {name!r} ({c.dataset_type}) has dimensions {sorted(missing)} "
                    f"that the task's dimensions {list(t.dimensions)} do not include."
                )
    seen: dict[str, tuple[str, Connection]] = {}
    for t in tasks.values():
        for c in t.connections.values():
            if c.dataset_type in seen:
                other_label, other = seen[c.dataset_type]
                if set(other.dimensions) != set(c.dimensions):
                    raise PipelineDefinitionError(
                        f"Dataset type {c.dataset_type!r} has dimensions {list(other.dimensions)} in task "
                        f"{other_label!r} ({other.name}) but {list(c.dimensions)} in task {t.label!r} ({c.name})."
                    )
            else:
                seen[c.dataset_type] = (t.label, c)
        for c in t.prerequisites.values():
            if c.dataset_type in producers:
                raise PipelineDefinitionError(
                    f"Task {t.label!r} takes {c.dataset_type!r} as a prerequisite, but task "
                    f"{producers[c.dataset_type]!r} writes it; make it a regular Input."
                )
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for t in tasks.values():
        sorter.add(
            t.label, *{producers[c.dataset_type] for c in t.inputs.values() if c.dataset_type in producers}
        )
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        raise PipelineDefinitionError(
            "The pipeline has a cycle: "
            + " → ".join(cycle)
            + "; a task cannot (indirectly) read its own output."
        ) from None
