"""docs/release-plan.md: generated from the release plan's pydantic models, committed, and kept in step."""

from __future__ import annotations

import datetime
import importlib.util
import re
import sys
import typing
from pathlib import Path
from typing import Any

import pydantic
from typing_extensions import is_typeddict

from porter.release import ReleasePlan, load_plan, rubin_template
from porter.release._plan_reference import COMMAND, _model_section, _models, plan_reference
from porter.release.reference import main

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "release-plan.md"


def _reachable(root: type) -> dict[type, list[str]]:
    """Every model and TypedDict the plan's fields reach → its field names (walked here independently)."""
    found: dict[type, list[str]] = {}

    def types_in(t: Any) -> list[Any]:
        return [t, *(x for a in typing.get_args(t) for x in types_in(a))]

    def visit(cls: type) -> None:
        if cls in found:
            return
        if issubclass(cls, pydantic.BaseModel):
            fields = {name: info.annotation for name, info in cls.model_fields.items()}
        else:
            fields = typing.get_type_hints(cls)
        found[cls] = list(fields)
        for hint in fields.values():
            for t in types_in(hint):
                if (isinstance(t, type) and issubclass(t, pydantic.BaseModel)) or is_typeddict(t):
                    visit(t)

    visit(root)
    return found


def _section(page: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", page, flags=re.S | re.M)
    assert match, f"no section '## {title}' in {PAGE}"
    return match.group(1)


def test_the_committed_page_is_the_generated_one() -> None:
    assert PAGE.exists(), f"{PAGE} is missing: run `{COMMAND}`"
    assert PAGE.read_text(encoding="utf-8") == plan_reference(), (
        f"{PAGE.relative_to(ROOT)} is not what the release plan's models generate "
        f"(a field, a docstring, a kind or a rule changed): regenerate it with `{COMMAND}` and commit it"
    )


def test_every_field_of_every_model_is_documented() -> None:
    page = plan_reference()
    models = _reachable(ReleasePlan)
    assert {m.__name__ for m in models} >= {"ReleasePlan", "Person", "Checkpoint", "Item", "Milestone"}
    assert {m.__name__ for m in models} >= {"Expected"}
    for model, fields in models.items():
        section = _section(page, model.__name__)
        for field in fields:
            assert re.search(rf"^\| `{field}` \|", section, flags=re.M), f"{model.__name__}.{field}"
    assert {m for m, _ in _models(ReleasePlan)} == set(models)


def test_the_page_documents_kinds_rules_and_field_docstrings() -> None:
    page = plan_reference()
    kinds = _section(page, "Item kinds")
    assert "| `manual` | `check` |" in kinds
    assert "| `datasets` | `dataset_types` | `collections`, `expected`, `group_by` |" in kinds
    rules = _section(page, "Content rules")
    assert "| `band_coverage` | `column`, `bands`, `min_fraction`, `group_by` | `column`, `bands` |" in rules
    assert "`{rule: range, column: psfFlux, min: 0}`" in rules
    checkpoint = _section(page, "Checkpoint")
    assert "| `deadline` | date (YYYY-MM-DD) | — | yes |" in checkpoint  # a required field has no default
    assert (
        "| `required_at` | one of 'minimal' \\| 'standard' \\| 'rigorous' | `\"minimal\"` | no |"
        in checkpoint
    )
    assert "The decider may always sign." in checkpoint  # a multi-line attribute docstring
    assert "Kinds: `catalog`, `files`, `hips`. Required by `catalog`, `files`, `hips`." in _section(
        page, "Item"
    )


def test_the_example_plan_is_the_rubin_template_and_loads(tmp_path: Path) -> None:
    example = _section(plan_reference(), "Example plan")
    blocks = re.findall(r"^```yaml\n(.*?)^```$", example, flags=re.S | re.M)
    assert len(blocks) == 1
    path = tmp_path / "DP2.yaml"
    path.write_text(blocks[0], encoding="utf-8")
    assert load_plan(path) == rubin_template("DP2", "/repo/main", datetime.date(2027, 1, 4))


def test_the_command_prints_or_writes_the_page(tmp_path: Path, capsys: Any) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out == plan_reference()
    out = tmp_path / "docs" / "release-plan.md"
    assert main([str(out)]) == 0
    assert out.read_text(encoding="utf-8") == plan_reference()


MODELS = '''
from __future__ import annotations
import datetime
from typing import Literal
import pydantic

class Inner(pydantic.BaseModel):
    """A model added later."""

    size: int = 3
    """How big."""

class Outer(pydantic.BaseModel):
    when: datetime.date
    """The day."""
    mode: Literal["a", "b"] = "a"
    inner: list[Inner] = []
    note: str | None = None
    undocumented: bool = False
'''


def test_the_generator_walks_any_model(tmp_path: Path) -> None:
    """New models and fields need no change to the generator: their docstrings are read from the source."""
    (tmp_path / "later_models.py").write_text(MODELS)
    spec = importlib.util.spec_from_file_location("later_models", tmp_path / "later_models.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["later_models"] = module
    try:
        spec.loader.exec_module(module)
        found = _models(module.Outer)
        assert [m.__name__ for m, _ in found] == ["Outer", "Inner"]
        assert found[1][1] == ["Outer.inner"]
        outer = _model_section(*found[0])
        assert "| `when` | date (YYYY-MM-DD) | — | yes | The day. |" in outer
        assert "| `mode` | one of 'a' \\| 'b' | `\"a\"` | no |  |" in outer
        assert "| `inner` | list[[Inner](#inner)] | `[]` | no |  |" in outer
        assert "| `note` | str \\| null | `null` | no |  |" in outer
        assert "| `undocumented` | bool | `false` | no |  |" in outer
        inner = _model_section(*found[1])
        assert "A model added later." in inner and "| `size` | int | `3` | no | How big. |" in inner
    finally:
        del sys.modules["later_models"]
