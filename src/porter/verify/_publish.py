"""Report publication: run a parameterized Jupyter notebook against a run and store its HTML in the run.

A report is only worth keeping if it can be made again, so the stored HTML carries what made it:
the notebook's name, the SHA-256 and full text of its source, and the parameters injected
(``repo``, ``run`` and the user's), in a ``<script type="application/json"
id="porter-report-provenance">`` block read back by `report_provenance`.

Dataset type design: one dataset type per notebook, ``verifyReport_<name>`` (storage class
``Text``), with the single dimension ``instrument``.  A report belongs to a run as a whole, not to
a tract or a visit; the run's instrument (its only one, found from its datasets, or given) is the
coarsest data ID porter's registry stores (a dimensionless type cannot be put today), so a run
holds one report per notebook and instrument.  Naming the type after the notebook lets one run
hold several reports and ``query_datasets("verifyReport_*")`` list them.  Re-publishing into a run that already has the report is refused (daf_butler's rule:
one dataset per type and data ID in a run) unless ``replace=True``, which removes the old one
first.

Parameters are injected as papermill does: a new cell, tagged ``injected-parameters``, right after
the cell tagged ``parameters``; a parameter the notebook does not declare in that cell is refused
before anything runs, so a typo cannot silently leave the default in place.
"""

from __future__ import annotations

import ast
import hashlib
import html
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._problems import VerifyError

if TYPE_CHECKING:
    from ..butler import DirectButler
    from ..registry import DatasetRef

__all__ = [
    "NotebookExecutionError",
    "ReportExistsError",
    "ReportParameterError",
    "ReportToolsMissingError",
    "check_notebook",
    "parse_parameter",
    "publish",
    "report_dataset_type",
    "report_provenance",
    "require_report_tools",
]

PROVENANCE_ID = "porter-report-provenance"
_RESERVED = ("repo", "run")
DEFAULT_TIMEOUT = 600.0


class ReportParameterError(VerifyError, ValueError):
    """The notebook or its parameters cannot be run: no ``parameters`` cell, an unknown or bad parameter."""


class NotebookExecutionError(VerifyError, RuntimeError):
    """A cell of the notebook failed (or timed out, or the kernel died); nothing was stored."""


class ReportExistsError(VerifyError, ValueError):
    """The run already holds this notebook's report, and replacing it was not asked for."""


class ReportToolsMissingError(VerifyError, ImportError):
    """The optional notebook machinery (porter's ``reports`` extra) is not installed."""


_REPORT_TOOLS = ("nbformat", "nbclient", "nbconvert", "ipykernel")


def require_report_tools() -> None:
    """Refuse, naming the fix, when nbclient, nbconvert, nbformat or ipykernel is missing.

    Checked without importing them (they are slow to import), so a caller can refuse a
    pipeline run that would publish reports before any of its work starts.
    """
    import importlib.util

    missing = []
    for name in _REPORT_TOOLS:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    if missing:
        raise ReportToolsMissingError(
            f"publishing notebook reports needs {', '.join(missing)} (not installed): "
            "pip install 'porter[reports]'."
        )


def report_dataset_type(notebook: str | Path) -> str:
    """The dataset type holding a notebook's reports: ``verifyReport_<stem>`` (non-word characters → ``_``)."""
    stem = re.sub(r"\W", "_", Path(notebook).stem)
    return f"verifyReport_{stem}"


def parse_parameter(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` from the command line: VALUE as JSON (numbers, true, lists…), else as a string."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ReportParameterError(f"parameter {text!r} is not NAME=VALUE (e.g. -p threshold=0.9 -p band=r).")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


def _parameters_cell(nb: Any, path: Path) -> tuple[int, set[str]]:
    """The index of the cell tagged ``parameters`` and the names it assigns."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            try:
                tree = ast.parse(cell.source)
            except SyntaxError as exc:
                raise ReportParameterError(
                    f"{path}: the parameters cell (cell {index + 1}) is not Python: {exc}"
                ) from None
            names: set[str] = set()
            for node in ast.walk(tree):
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                for target in targets:
                    if isinstance(target, ast.Name):
                        names.add(target.id)
            return index, names
    raise ReportParameterError(
        f"{path} has no cell tagged 'parameters': tag the cell that sets repo, run and the defaults "
        '(cell metadata {"tags": ["parameters"]}) so parameters can be injected after it.'
    )


class _Node(dict[str, Any]):
    """A notebook JSON object with attribute access (what nbformat gives), to check one without nbformat."""

    def __getattr__(self, name: str) -> Any:
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return "".join(value) if name == "source" and isinstance(value, list) else value


def check_notebook(notebook_path: str | Path, parameters: Mapping[str, Any] | None = None) -> None:
    """Check, without running it or importing the notebook machinery, that a notebook can take ``parameters``.

    The notebook must be readable JSON with a cell tagged ``parameters`` that declares each of
    ``parameters``; ``repo`` and ``run`` are porter's.  Raises `ReportParameterError` naming the fix.
    """
    path = Path(notebook_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_hook=_Node)
    except (OSError, ValueError) as exc:
        raise ReportParameterError(f"cannot read notebook {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise ReportParameterError(f"{path} is not a Jupyter notebook (no 'cells' list).")
    _index, declared = _parameters_cell(data, path)
    _check_parameters(dict(parameters or {}), declared, path)


def _check_parameters(parameters: Mapping[str, Any], declared: set[str], path: Path) -> None:
    """Refuse reserved, unknown or non-JSON parameters before the kernel starts."""
    for name, value in parameters.items():
        if name in _RESERVED:
            raise ReportParameterError(
                f"parameter {name!r} is set by porter (from the repository and --run); do not pass it."
            )
        if not name.isidentifier():
            raise ReportParameterError(f"parameter {name!r} is not a Python identifier.")
        if name not in declared:
            known = ", ".join(sorted(declared - set(_RESERVED))) or "none"
            raise ReportParameterError(
                f"parameter {name!r} is not declared in {path.name}'s parameters cell (declared: {known})."
            )
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise ReportParameterError(
                f"parameter {name!r} = {value!r} is not JSON (str, number, bool, None, list, dict): "
                "it could not be recorded to make the report again."
            ) from None


def _inject(nb: Any, after: int, values: Mapping[str, Any]) -> None:
    """Insert papermill's ``injected-parameters`` cell after the parameters cell."""
    import nbformat

    lines = ["# Parameters (injected by porter verify publish)"]
    lines += [f"{name} = {value!r}" for name, value in values.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(after + 1, cell)


def _failure(nb: Any, exc: Exception, path: Path) -> NotebookExecutionError:
    """An error naming the failing cell: its number, first line and the exception it raised."""
    failing = None
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            failing = (index, cell)
    lines = str(exc).strip().splitlines() or [""]
    detail = f"{getattr(exc, 'ename', type(exc).__name__)}: {getattr(exc, 'evalue', '') or lines[-1]}"
    if failing is None:
        return NotebookExecutionError(
            f"{path.name} failed ({type(exc).__name__}): {str(exc).strip()[:500]}; nothing stored."
        )
    index, cell = failing
    first = (cell.source.strip().splitlines() or [""])[0]
    return NotebookExecutionError(
        f"{path.name}: cell {index + 1} ({first!r}) failed with {detail}; nothing stored."
    )


def _execute(nb: Any, path: Path, timeout: float, progress: Callable[[int, int], None] | None) -> None:
    """Run every cell in this environment's ``python3`` kernel (ipykernel), in the notebook's directory."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    total = len(nb.cells)

    def done(cell: Any, cell_index: int, **_: Any) -> None:
        if progress is not None:
            progress(cell_index + 1, total)

    client = NotebookClient(
        nb,
        timeout=int(timeout),
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_complete=done,
    )
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        raise _failure(nb, exc, path) from None
    except TimeoutError as exc:
        raise _failure(nb, exc, path) from None


def _render(nb: Any, provenance: Mapping[str, Any]) -> str:
    """The executed notebook as one HTML page, the provenance block in its head."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    block = json.dumps(provenance, sort_keys=True).replace("</", "<\\/")
    script = f'<script type="application/json" id="{PROVENANCE_ID}">{block}</script>\n'
    title = f'<meta name="porter-report" content="{html.escape(str(provenance["notebook"]))}">\n'
    if "</head>" in body:
        return body.replace("</head>", title + script + "</head>", 1)
    return title + script + body


def report_provenance(report: str) -> dict[str, Any]:
    """What made a stored report: notebook, source_sha256, source, parameters, run, porter version."""
    match = re.search(rf'<script type="application/json" id="{PROVENANCE_ID}">(.*?)</script>', report, re.S)
    if match is None:
        raise VerifyError(
            "this HTML carries no porter report provenance (was it made by porter verify publish?)."
        )
    result: dict[str, Any] = json.loads(match.group(1))
    return result


def _check_run(butler: DirectButler, run: str) -> None:
    """The report goes into an existing RUN collection: a typo must not create a new run."""
    from ..errors import PorterError
    from ..registry import CollectionType

    try:
        kind = butler.registry.collection_type(run)
    except (PorterError, LookupError):
        raise ReportParameterError(f"run {run!r} is not a collection of this repository.") from None
    if kind != CollectionType.RUN:
        raise ReportParameterError(
            f"{run!r} is a {kind.name} collection; a report is stored in a RUN collection."
        )


def _instrument_of(butler: DirectButler, run: str) -> str:
    """The run's only instrument: the report's data ID."""
    found = sorted(butler.registry.governor_values([run]).get("instrument", set()))
    if len(found) != 1:
        raise ReportParameterError(
            f"run {run!r} has datasets of {len(found)} instruments ({', '.join(map(str, found)) or 'none'}); "
            "say which one the report is for (instrument=…, --instrument)."
        )
    return str(found[0])


def publish(
    butler: DirectButler,
    notebook_path: str | Path,
    run: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    replace: bool = False,
    instrument: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetRef:
    """Execute ``notebook_path`` for ``run`` and store its HTML as ``verifyReport_<name>`` in ``run``.

    The notebook gets ``repo`` (the repository's root) and ``run`` plus ``parameters``; each cell
    may take ``timeout`` seconds.  A failing cell raises `NotebookExecutionError` naming it, and
    nothing is stored; an existing report raises `ReportExistsError` unless ``replace``.
    ``instrument`` (the report's data ID) defaults to the run's only instrument.
    ``progress(done, total)`` is called after each cell.
    """
    require_report_tools()
    import nbformat

    from .. import __version__

    path = Path(notebook_path)
    try:
        source = path.read_text(encoding="utf-8")
        nb = nbformat.reads(source, as_version=4)
    except (OSError, ValueError) as exc:
        raise ReportParameterError(f"cannot read notebook {path}: {exc}") from None
    params = dict(parameters or {})
    index, declared = _parameters_cell(nb, path)
    _check_parameters(params, declared, path)
    _check_run(butler, run)
    instrument = instrument or _instrument_of(butler, run)

    dataset_type = report_dataset_type(path)
    butler.register_dataset_type(dataset_type, ["instrument"], "Text")
    existing = butler.find_dataset(dataset_type, instrument=instrument, collections=run)
    if existing is not None and not replace:
        raise ReportExistsError(
            f"run {run!r} already holds the report {dataset_type!r} for {instrument} (one per run); "
            "pass replace=True (--replace) to publish it again."
        )

    values = {"repo": str(butler.root), "run": run, **params}
    _inject(nb, index, values)
    _execute(nb, path, timeout, progress)
    provenance = {
        "notebook": path.name,
        "dataset_type": dataset_type,
        "source_sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
        "source": source,
        "parameters": params,
        "run": run,
        "instrument": instrument,
        "porter_version": __version__,
    }
    report = _render(nb, provenance)
    if existing is not None:
        butler.prune_datasets([existing], disassociate=True, unstore=True, purge=True)
    return butler.put(report, dataset_type, instrument=instrument, run=run)
