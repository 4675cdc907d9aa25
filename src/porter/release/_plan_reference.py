"""The release plan's reference page, generated from the pydantic models of `_plan` so it cannot drift.

`plan_reference` walks `ReleasePlan` and every model (and TypedDict) its fields reach, whatever they
are: each field's type, default, whether it is required, and its description — the attribute docstring
written under the field in the source, read here with `ast` (the models do not need pydantic's
``use_attribute_docstrings``).  Then the item kinds and the fields each one uses, the content rules with
their keys, examples and meanings (read from `porter.schema._conformance`), the value checks behind the
types, the plan's limits, and a complete example plan: the rubin template as `dump_plan` writes it, loaded
back with `load_plan` to prove it valid.

``python -m porter.release.reference docs/release-plan.md`` rewrites the committed page.
"""

from __future__ import annotations

import ast
import datetime
import functools
import inspect
import itertools
import json
import sys
import tempfile
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import annotated_types
import pydantic
from pydantic.fields import FieldInfo
from typing_extensions import is_typeddict

from ..schema import RULES, validate_rule
from . import _plan
from ._plan import _KIND_FIELDS, _KIND_NEEDS, ReleasePlan, dump_plan, load_plan
from ._templates import rubin_template

__all__ = ["COMMAND", "example_plan", "plan_reference"]

COMMAND = "python -m porter.release.reference docs/release-plan.md"
"""The command that regenerates the committed page (run from the repository's root)."""

_COMMON_ITEM_FIELDS = ("name", "kind", "description")
"""The fields every kind of item uses (`_plan._KIND_FIELDS` lists the others)."""


# --- the source: attribute docstrings ------------------------------------------------------------------


@functools.cache
def _module_tree(module_name: str) -> ast.Module:
    return ast.parse(inspect.getsource(sys.modules[module_name]))


def _targets(stmt: ast.stmt) -> list[str]:
    """The names an assignment binds (``a = …``, ``a: T = …``, ``a, b = …``); none for anything else."""
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return [stmt.target.id]
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target = stmt.targets[0]
        if isinstance(target, ast.Name):
            return [target.id]
        if isinstance(target, ast.Tuple) and all(isinstance(e, ast.Name) for e in target.elts):
            return [e.id for e in target.elts if isinstance(e, ast.Name)]
    return []


def _attribute_docstrings(body: list[ast.stmt]) -> dict[str, str]:
    """Name → the string literal written on the line after its assignment (PEP 257's attribute docstring)."""
    docs: dict[str, str] = {}
    for stmt, following in itertools.pairwise(body):
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            for name in _targets(stmt):
                docs[name] = inspect.cleandoc(following.value.value)
    return docs


def _class_node(cls: type) -> ast.ClassDef | None:
    """The ``class`` statement of ``cls`` in its module's source (nested classes too, by qualified name)."""
    body: list[ast.stmt] = _module_tree(cls.__module__).body
    node = None
    for part in cls.__qualname__.split("."):
        node = next((n for n in body if isinstance(n, ast.ClassDef) and n.name == part), None)
        if node is None:
            return None
        body = node.body
    return node


def _field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a model's (or TypedDict's) fields, those of its base models included."""
    docs: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if base is cls or (
            issubclass(base, pydantic.BaseModel) and base is not pydantic.BaseModel and base.model_fields
        ):
            node = _class_node(base)
            if node is not None:
                docs.update(_attribute_docstrings(node.body))
    return docs


def _module_constants(module: types.ModuleType) -> Iterator[tuple[str, Any, str]]:
    """(name, value, docstring) of each public constant (an UPPER_CASE name) with an attribute docstring."""
    docs = _attribute_docstrings(_module_tree(module.__name__).body)
    for name, doc in docs.items():
        if name.isupper() and not name.startswith("_") and hasattr(module, name):
            yield name, getattr(module, name), doc


def _module_values(path: str) -> dict[str, Any]:
    """The module-level names of a source file bound to plain literals (read, not imported)."""
    values: dict[str, Any] = {}
    for stmt in ast.parse(Path(path).read_text(encoding="utf-8")).body:
        names = _targets(stmt)
        value = getattr(stmt, "value", None)
        if len(names) == 1 and value is not None:
            try:
                values[names[0]] = ast.literal_eval(value)
            except ValueError:
                continue
    return values


# --- Markdown ------------------------------------------------------------------------------------------


def _anchor(title: str) -> str:
    """GitHub's anchor of a heading made of a plain word (the models' and sections' names)."""
    return "-".join(title.lower().split())


def _cell(text: str) -> str:
    """Text for one table cell: one line, paragraphs kept apart, pipes escaped."""
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
    return "<br><br>".join(p for p in paragraphs if p).replace("|", "\\|")


def _prose(text: str) -> str:
    """A docstring as Markdown paragraphs (its line breaks dropped, its blank lines kept)."""
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n") if p.strip())


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _value(value: Any) -> str:
    """A value as a plan would write it (YAML flow style)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (str, int, float, list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, tuple):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, pydantic.BaseModel):  # a nested section at its defaults, in YAML flow style
        fields = value.model_dump(mode="json")
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in fields.items()) + "}"
    return repr(value)


def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


# --- types ---------------------------------------------------------------------------------------------


def _is_model(t: Any) -> bool:
    return (isinstance(t, type) and issubclass(t, pydantic.BaseModel)) or is_typeddict(t)


def _constraints(metadata: list[Any]) -> list[str]:
    """What the metadata of an ``Annotated`` type constrains, in words (validators are described apart)."""
    notes: list[str] = []
    for m in metadata:
        if isinstance(m, FieldInfo):
            notes += _constraints(list(m.metadata))
        elif isinstance(m, pydantic.StringConstraints):
            if m.min_length == 1:
                notes.append("not empty")
            elif m.min_length:
                notes.append(f"≥ {m.min_length} characters")
            if m.max_length is not None:
                notes.append(f"≤ {m.max_length} characters")
            if m.pattern is not None:
                notes.append(f"matching {_code(str(m.pattern))}")
        elif isinstance(m, annotated_types.Ge):
            notes.append(f"≥ {m.ge}")
        elif isinstance(m, annotated_types.Gt):
            notes.append(f"> {m.gt}")
        elif isinstance(m, annotated_types.Le):
            notes.append(f"≤ {m.le}")
        elif isinstance(m, annotated_types.Lt):
            notes.append(f"< {m.lt}")
        elif isinstance(m, annotated_types.MinLen):
            notes.append(f"at least {m.min_length}")
        elif isinstance(m, annotated_types.MaxLen):
            notes.append(f"at most {m.max_length}")
    return notes


def _special(t: Any) -> str | None:
    """Types with a section of their own: content rules."""
    rule = getattr(_plan, "Rule", None)
    if rule is not None and t == rule:
        return "[rule](#content-rules)"
    return None


def _type(t: Any) -> str:
    """A readable type: ``list[str]``, ``date (YYYY-MM-DD)``, ``one of 'a' | 'b'``, a link to a model."""
    special = _special(t)
    if special is not None:
        return special
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is Annotated:
        base, *metadata = args
        text = _type(base)
        notes = _constraints(metadata)
        return f"{text} ({', '.join(notes)})" if notes else text
    if origin in (Union, types.UnionType):
        shown = [_type(a) for a in args if a is not type(None)]
        return " | ".join(shown + (["null"] if type(None) in args else []))
    if origin is Literal:
        return "one of " + " | ".join(repr(a) for a in args)
    if origin in (list, tuple, set, frozenset, dict):
        return f"{origin.__name__}[{', '.join(_type(a) for a in args)}]"
    if t is Any:
        return "any"
    if t is datetime.date:
        return "date (YYYY-MM-DD)"
    if t is type(None):
        return "null"
    if _is_model(t):
        return f"[{t.__name__}](#{_anchor(t.__name__)})"
    if isinstance(t, type):
        return t.__name__
    return str(t)


def _inner_types(t: Any) -> Iterator[Any]:
    """``t`` and every type inside it."""
    yield t
    for a in typing.get_args(t):
        if not isinstance(a, (str, int, float, bool)) and a is not None:
            yield from _inner_types(a)


def _hints(cls: type) -> dict[str, Any]:
    """Field name → its full type (``Annotated`` kept), in the order the fields are declared."""
    hints = typing.get_type_hints(cls, include_extras=True)
    names = list(cls.model_fields) if issubclass(cls, pydantic.BaseModel) else list(hints)
    return {n: hints[n] for n in names}


def _models(root: type) -> list[tuple[type, list[str]]]:
    """Every model (or TypedDict) reachable from ``root`` through field types, breadth first, with the
    fields (``Model.field``) it appears in."""
    seen: dict[type, list[str]] = {root: []}
    queue = [root]
    while queue:
        cls = queue.pop(0)
        for name, hint in _hints(cls).items():
            for t in _inner_types(hint):
                if _is_model(t):
                    if t not in seen:
                        seen[t] = []
                        queue.append(t)
                    seen[t].append(f"{cls.__name__}.{name}")
    return list(seen.items())


# --- sections ------------------------------------------------------------------------------------------


def _item_notes(field: str) -> str:
    """Which kinds of item use ``field``, and which need it."""
    if field in _COMMON_ITEM_FIELDS:
        return "Every kind."
    users = [k for k, fields in _KIND_FIELDS.items() if field in fields]
    needers = [k for k, need in _KIND_NEEDS.items() if need == field]
    text = "Kinds: " + ", ".join(f"`{k}`" for k in users) + "." if users else ""
    if needers:
        text += " Required by " + ", ".join(f"`{k}`" for k in needers) + "."
    return text.strip()


def _model_section(cls: type, used_in: list[str]) -> str:
    out = [f"## {cls.__name__}"]
    doc = cls.__dict__.get("__doc__")
    if doc:
        out.append(_prose(doc))
    if used_in:
        where = ", ".join(
            f"[{u.split('.')[0]}](#{_anchor(u.split('.')[0])}).`{u.split('.', 1)[1]}`" for u in used_in
        )
        out.append(f"Used in: {where}.")
    else:
        out.append("The whole plan file: a YAML mapping of these fields.")
    if is_typeddict(cls):
        out.append("A YAML mapping with these keys.")
    docs = _field_docs(cls)
    rows = []
    for name, hint in _hints(cls).items():
        if issubclass(cls, pydantic.BaseModel):
            info = cls.model_fields[name]
            required = info.is_required()
            default = "—" if required else _code(_value(info.get_default(call_default_factory=True)))
        else:
            required = name in getattr(cls, "__required_keys__", frozenset())
            default = "—"
        description = docs.get(name, "")
        if cls is _plan.Item:
            description = (description + "\n\n" + _item_notes(name)).strip()
        rows.append([f"`{name}`", _type(hint), default, "yes" if required else "no", description])
    out.append(_table(["Field", "Type", "Default", "Required", "Description"], rows))
    return "\n\n".join(out)


def _kinds_section() -> str:
    kinds = typing.get_args(_plan.Item.model_fields["kind"].annotation) or tuple(_KIND_FIELDS)
    rows = []
    for kind in kinds:
        uses = [f for f in _KIND_FIELDS.get(kind, ()) if f != _KIND_NEEDS.get(kind)]
        need = _KIND_NEEDS.get(kind)
        rows.append(
            [
                f"`{kind}`",
                f"`{need}`" if need else "",
                ", ".join(f"`{f}`" for f in uses) or "—",
            ]
        )
    return "\n\n".join(
        [
            "## Item kinds",
            f"An [Item](#item)'s `kind` says which of its fields apply. Every kind uses "
            f"{', '.join(f'`{f}`' for f in _COMMON_ITEM_FIELDS)}; each needs one field, and may use a few "
            "others. An item that sets a field its kind does not use is refused (the message names the "
            "kinds that use it).",
            _table(["Kind", "Needs", "May also use"], rows),
        ]
    )


def _rules_section() -> str:
    source = inspect.getsourcefile(validate_rule)
    values = _module_values(source) if source else {}
    keys: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = values.get("_RULE_KEYS", {})
    examples: dict[str, str] = values.get("_EXAMPLES", {})
    meanings: dict[str, str] = values.get("_MEANINGS", {})
    ungrouped: dict[str, tuple[str, str]] = values.get("_UNGROUPED", {})
    per_dataset: tuple[str, ...] = values.get("_PER_DATASET_KEYS", ())
    for found, name in ((keys, "_RULE_KEYS"), (meanings, "_MEANINGS")):
        missing = [r for r in RULES if r not in found]
        if missing:
            raise RuntimeError(
                f"the content rules {missing} were not found in {name} in {source}: "
                "add them there, or update porter.release._plan_reference"
            )
    rows = []
    for rule in RULES:
        takes, needs = keys[rule]
        note = meanings[rule]
        if rule in ungrouped:
            why, instead = ungrouped[rule]
            note += f"\n\nNo `group_by`: {why}; {instead}."
        rows.append(
            [
                f"`{rule}`",
                ", ".join(f"`{k}`" for k in takes),
                ", ".join(f"`{k}`" for k in needs),
                " or ".join(_code(e.strip()) for e in _split_examples(examples.get(rule, ""))),
                note,
            ]
        )
    # validate_rule's docstring, but its summary and what it raises: the rules' meaning.
    paragraphs = [
        p
        for p in inspect.cleandoc(validate_rule.__doc__ or "").split("\n\n")[1:]
        if not p.startswith("Raises")
    ]
    out = [
        "## Content rules",
        "The `rules` of a `catalog` [Item](#item): each is a mapping `{rule: NAME, …}` with the keys below. "
        "A rule is checked when the plan is loaded, so a malformed one is refused then, naming the fix.",
        _table(["Rule", "Keys", "Needs", "Example", "Notes"], rows),
    ]
    out += [_prose(p) for p in paragraphs if p.strip()]
    if per_dataset:
        out.append(
            "`per_dataset` takes " + ", ".join(f"`{k}`" for k in per_dataset) + " (`dataset_type` needed)."
        )
    return "\n\n".join(out)


def _split_examples(text: str) -> list[str]:
    """``"{a}, {b} or {c}"`` → the flow mappings it lists."""
    found, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "{":
            depth += 1
            if depth == 1:
                start = i
        elif c == "}":
            depth -= 1
            if depth == 0:
                found.append(text[start : i + 1])
    return found or ([text] if text else [])


def _validators(t: Any) -> Iterator[Callable[..., Any]]:
    for m in typing.get_args(t)[1:] if typing.get_origin(t) is Annotated else ():
        func = getattr(m, "func", None)
        if callable(func):
            yield func


def _values_section(models: list[tuple[type, list[str]]]) -> str:
    """Each validated kind of value (a type alias of `_plan` with a documented validator), and its fields."""
    aliases = {
        name: value
        for name, value in vars(_plan).items()
        if typing.get_origin(value) is Annotated and any(f.__doc__ for f in _validators(value))
    }
    rows = []
    for name, alias in aliases.items():
        fields = [
            f"{cls.__name__}.{field}"
            for cls, _ in models
            for field, hint in _hints(cls).items()
            if any(t == alias for t in _inner_types(hint))
        ]
        if not fields:
            continue
        doc = " ".join(inspect.cleandoc(f.__doc__ or "") for f in _validators(alias))
        rows.append([f"`{name}`", _type(alias), doc, ", ".join(f"`{f}`" for f in fields)])
    return "\n\n".join(
        [
            "## Values",
            "What the values of these fields must be, beyond their type (the names are those of the "
            "types in `porter/release/_plan.py`).",
            _table(["Value", "Type", "Accepts", "Fields"], rows),
        ]
    )


def _constants_section() -> str:
    rows = [[f"`{name}`", _code(_value(value)), doc] for name, value, doc in _module_constants(_plan)]
    return "\n\n".join(["## Limits and constants", _table(["Name", "Value", "Meaning"], rows)])


def example_plan() -> str:
    """The rubin template for DP2 as `dump_plan` writes it — after checking that `load_plan` reads it back
    as the same plan."""
    plan = rubin_template("DP2", "/repo/main", datetime.date(2027, 1, 4))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "DP2.yaml"
        dump_plan(plan, path)
        text = path.read_text(encoding="utf-8")
        if load_plan(path) != plan:
            raise RuntimeError("the example plan does not load back as the rubin template")
    return text


def plan_reference() -> str:
    """The release plan's reference page, in Markdown."""
    models = _models(ReleasePlan)
    intro = _prose(_plan.__doc__ or "")
    contents = [f"- [{cls.__name__}](#{_anchor(cls.__name__)})" for cls, _ in models]
    contents += [
        f"- [{title}](#{_anchor(title)})"
        for title in ("Item kinds", "Content rules", "Values", "Limits and constants", "Example plan")
    ]
    sections = [
        "# Release plan reference",
        f"<!-- Generated from the pydantic models of porter.release by `{COMMAND}`; do not edit. -->",
        intro,
        "A plan is a YAML file, `releases/NAME.yaml` in the repository it draws from; `porter release init` "
        "writes one (see the [example](#example-plan)). Every field is listed below, model by model, "
        "starting from the whole plan; a field that is not required may be left out, and then has its "
        "default. A field no model names is refused.",
        "\n".join(contents),
        *(_model_section(cls, used_in) for cls, used_in in models),
        _kinds_section(),
        _rules_section(),
        _values_section(models),
        _constants_section(),
        "## Example plan",
        "The rubin template, `porter release init DP2 --template rubin --repo /repo/main --start 2027-01-04`: "
        "the six hand-overs of Rubin's data previews with their signers, shipping lists, milestones and "
        "environments (fields left at their defaults are not written).",
        "```yaml\n" + example_plan().rstrip("\n") + "\n```",
    ]
    return "\n\n".join(s for s in sections if s) + "\n"
