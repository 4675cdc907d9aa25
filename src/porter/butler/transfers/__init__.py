"""Import and export of Rubin butler export files."""

from ._yaml_export import EXPORT_FORMAT_VERSION, ExportWriter, refs_for_export, write_export
from ._yaml_import import ImportPlan, apply_contents, apply_definitions, apply_plan, plan_refs, read_export

__all__ = [
    "EXPORT_FORMAT_VERSION",
    "ExportWriter",
    "ImportPlan",
    "apply_contents",
    "apply_definitions",
    "apply_plan",
    "plan_refs",
    "read_export",
    "refs_for_export",
    "write_export",
]
