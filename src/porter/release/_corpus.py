"""The regression corpus: checks every release runs, so a mistake caught once is caught in every later release.

A corpus is a directory of YAML rule files and small Python check files::

    # corpus/source-positive-flux.yaml
    name: source-positive-flux
    description: DP1 shipped negative PSF fluxes in Source (finding DP1-7)
    applies_to: {table: Source}          # or {item: source}
    rules:
      - {rule: range, column: psfFlux, min: 0}

    # corpus/object_ids.py
    APPLIES_TO = {"table": "Object"}
    def check(source):                   # a porter.schema.CatalogSource
        ...
        return CheckResult(...)          # or a list of them

A finding becomes a corpus check with ``porter release finding to-check``.  The corpus is a directory
below the plan's (`corpus_dir` refuses one that leaves it, by ``..`` or by a symbolic link), and its
Python checks run only when the plan enables them (``corpus: {python: true}``): they are code run
with the rights of whoever runs the checks.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import PorterError
from ..schema import ERROR, WARN, CatalogSource, CheckResult, RuleError, check_rules
from ._plan import Corpus, Item, PlanError, _name, _Problem

__all__ = ["APPLIES_TO_KEYS", "corpus_checks", "corpus_dir", "read_corpus_rule", "write_corpus_rule"]

APPLIES_TO_KEYS = ("table", "item")
"""What a corpus check may say it applies to: catalogs of a schema table, or the shipping-list item of a name."""


def corpus_dir(plan_dir: Path, corpus: Corpus) -> Path:
    """The corpus directory of a plan in ``plan_dir``; a `PlanError` if it (or a link on the way) leaves it.

    The plan's own validation refuses ``..`` and absolute paths; this also follows symbolic links, so a
    link inside the plan's directory cannot send ``finding to-check`` writing, or ``release check``
    reading, somewhere else.
    """
    path = plan_dir / corpus.path
    try:
        inside = path.resolve().is_relative_to(plan_dir.resolve())
    except (OSError, RuntimeError) as exc:  # a symbolic-link loop
        raise PlanError(
            f"The corpus {path} cannot be resolved ({exc}) — fix the link, or set corpus: in the plan."
        ) from None
    if not inside:
        raise PlanError(
            f"The corpus {path} leads to {path.resolve()}, outside the plan's directory {plan_dir} — "
            "put the corpus below the plan's directory, or set corpus: in the plan to a directory there."
        )
    return path


def _applies(spec: Mapping[str, Any], item: Item) -> bool:
    return (spec.get("table") is None or spec.get("table") == item.table) and (
        spec.get("item") is None or spec.get("item") == item.name
    )


def _check_applies_to(applies_to: Any, where: str) -> dict[str, str]:
    if not isinstance(applies_to, Mapping) or not applies_to:
        raise PlanError(
            f"{where}: say what the check applies to — --table NAME or --item NAME ({{table: Source}})."
        )
    for key, value in applies_to.items():
        if key not in APPLIES_TO_KEYS:
            raise PlanError(
                f"{where}: a check applies to a table or an item, not {key!r} — use applies_to: {{table: NAME}} or {{item: NAME}}."
            )
        if not isinstance(value, str) or not value.strip():
            raise PlanError(
                f"{where}: applies_to {key} must be a name, not {value!r} — e.g. {{{key}: Source}}."
            )
    return dict(applies_to)


def read_corpus_rule(path: Path) -> dict[str, Any]:
    """A YAML corpus check, validated: its name, applies_to and rules (a `PlanError` naming the file and fix)."""
    try:
        entry = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: cannot be read ({exc}) — fix or remove the corpus file.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise PlanError(
            f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc}) — fix or remove the corpus file."
        ) from None
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise PlanError(f"{path}: not readable YAML ({exc}) — fix or remove the corpus file.") from None
    if not isinstance(entry, dict):
        raise PlanError(
            f"{path}: a corpus check is a mapping (name:, description:, applies_to:, rules:) — fix or remove the file."
        )
    unknown = sorted(str(k) for k in entry if k not in ("name", "description", "applies_to", "rules"))
    if unknown:
        raise PlanError(
            f"{path}: unknown keys {unknown} — a corpus check has name, description, applies_to and rules."
        )
    _check_applies_to(entry.get("applies_to"), str(path))
    rules = entry.get("rules")
    if not isinstance(rules, list) or not rules:
        raise PlanError(
            f"{path}: rules must be a non-empty list — e.g. rules: [{{rule: range, column: psfFlux, min: 0}}]."
        )
    try:
        check_rules("", None, rules)
    except RuleError as exc:
        raise PlanError(f"{path}: {exc}") from None
    return entry


def corpus_checks(plan_dir: Path, settings: Corpus, item: Item, source: CatalogSource) -> list[CheckResult]:
    """Every corpus check that applies to a catalog item, run on its catalog.

    A corpus file that cannot be read or run as written is an ``error`` result naming the file and the fix;
    the other corpus checks still run.  Python checks run only if the plan enables them; otherwise each
    is a ``warn`` result saying it did not run and how to enable it, so nobody takes its silence for a pass.
    """
    try:
        corpus = corpus_dir(plan_dir, settings)
    except PlanError as exc:
        return [CheckResult(item.name, "corpus", ERROR, message=str(exc))]
    if not corpus.is_dir():
        return []
    out: list[CheckResult] = []
    for path in sorted(corpus.glob("*.yaml")):
        try:
            entry = read_corpus_rule(path)
        except PlanError as exc:
            out.append(CheckResult(item.name, f"corpus/{path.stem}", ERROR, message=str(exc)))
            continue
        if not _applies(entry["applies_to"], item):
            continue
        try:
            results = check_rules(item.name, source, entry["rules"])
        except PorterError as exc:  # a column this catalog lacks, or its files damaged
            results = [
                CheckResult(
                    item.name,
                    "rules",
                    ERROR,
                    message=f"{path.name}: {exc}",
                    sample=getattr(exc, "problems", []),
                )
            ]
        for r in results:
            r.check = f"corpus/{entry.get('name', path.stem)}: {r.check}"
        out += results
    for path in sorted(corpus.glob("*.py")):
        if not settings.python:
            out.append(
                CheckResult(
                    item.name,
                    f"corpus/{path.stem}",
                    WARN,
                    value="not run",
                    message=f"{path.name} is a Python check, and the plan does not run Python corpus checks "
                    "(they run code with your rights) — read it, then set corpus: {python: true} in the plan.",
                )
            )
            continue
        spec = importlib.util.spec_from_file_location(f"porter_corpus_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        try:  # a check written in Python is the corpus author's code: whatever it raises is its result
            spec.loader.exec_module(module)
            if not _applies(getattr(module, "APPLIES_TO", {}), item):
                continue
            got = module.check(source)
            results = got if isinstance(got, list) else [got]
        except Exception as exc:
            results = [
                CheckResult(item.name, path.stem, ERROR, message=f"{path.name}: {type(exc).__name__}: {exc}")
            ]
        for r in results:
            r.item = item.name
            r.check = f"corpus/{path.stem}: {r.check}"
        out += results
    return out


def write_corpus_rule(
    corpus: Path, name: str, description: str, applies_to: Mapping[str, Any], rules: list[dict[str, Any]]
) -> Path:
    """Add a YAML check to the corpus (refusing to overwrite one).

    Everything is checked before anything is written: the name (it names the file), what the check
    applies to, and every rule (`porter.schema.check_rules` without a catalog), so a malformed rule is
    refused here rather than turning into an error in every later release's checks.
    """
    if not rules:
        raise PlanError(
            "A corpus check needs at least one rule (e.g. {rule: range, column: psfFlux, min: 0})."
        )
    try:
        _name(name)
    except _Problem as exc:
        raise PlanError(f"Corpus check name: {exc}.") from None
    applies = _check_applies_to(applies_to, "A corpus check")
    try:
        check_rules("", None, rules)
    except RuleError as exc:
        raise PlanError(f"Corpus check {name!r}: {exc}.") from None
    if corpus.exists() and not corpus.is_dir():
        raise PlanError(
            f"The corpus {corpus} is a file, not a directory — move it, or set corpus: in the plan."
        )
    corpus.mkdir(parents=True, exist_ok=True)
    path = corpus / f"{name}.yaml"
    if path.exists():
        raise PlanError(f"{path} exists already; choose another name.")
    text = yaml.safe_dump(
        {"name": name, "description": description, "applies_to": applies, "rules": rules},
        sort_keys=False,
        allow_unicode=True,
    )
    # Written whole under a temporary name, then linked to its own: never half a file, never over another.
    tmp = corpus / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_text(text, encoding="utf-8")
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: create it exclusively instead
            with path.open("x", encoding="utf-8") as f:
                f.write(text)
    except FileExistsError:
        raise PlanError(f"{path} exists already; choose another name.") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path
