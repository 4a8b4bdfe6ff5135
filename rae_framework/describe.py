"""Human- and editor-facing descriptions of components: ``rae describe`` and ``rae schema``. Torch-free."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from pydantic_core import PydanticUndefined

from rae_framework.assembly import RECIPE_KIND, AssemblyEnvelope, ComponentEnvelope, load_assembly, recipe_path
from rae_framework.stage import STAGE_KIND
from rae_framework.registry import Entry
from rae_framework.session import Session


def parameter_rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(name, type, default, description)`` of every field; nested models are flattened as ``a.b``."""
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(parameter_rows(annotation, f"{prefix}{name}."))
            continue
        rows.append((f"{prefix}{name}", _type_name(annotation), _default_text(field), field.description or ""))
    return rows


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def _default_text(field: Any) -> str:
    if field.default_factory is not None:
        return "(computed)"
    if field.default is PydanticUndefined:
        return "required"
    return json.dumps(field.default, default=str)


def describe_component(session: Session, kind: str, name: str) -> str:
    """Text for ``rae describe KIND NAME``: origin, parameters and presets (NAME may also be a preset)."""
    if kind in session.registry.kinds and not session.registry.contains(kind, name):
        preset = next((p for p in session.presets.all(kind) if p.name == name), None)
        if preset is not None:
            return (f"{kind} preset '{name}' ({preset.source}): {preset.summary}\n"
                    f"params={json.dumps(preset.params)}\n\n{describe_component(session, kind, preset.component)}")
    entry = session.registry.get(kind, name)
    lines = [f"{kind} '{name}': {entry.summary}".rstrip(": "),
             f"provided by {entry.provenance.describe()}",
             f"class {entry.factory}, config {entry.config}", "", "Parameters:"]
    rows = parameter_rows(entry.load_config_model())
    lines.extend(format_table(("NAME", "TYPE", "DEFAULT", "DESCRIPTION"), rows, indent="  "))
    presets = [preset for preset in session.presets.all(kind) if preset.component == name]
    lines.extend(["", "Presets:" if presets else "Presets: none"])
    for preset in presets:
        lines.append(f"  {preset.name}: {preset.summary}  params={json.dumps(preset.params)}")
    return "\n".join(lines)


def describe_recipe(session: Session, name: str) -> str:
    """Text for ``rae describe recipe NAME``: summary, file, and whether it validates."""
    preset = session.presets.get(RECIPE_KIND, name)
    path = recipe_path(preset)
    lines = [f"recipe '{name}': {preset.summary}", f"file {path}"]
    if path.is_file():
        assembly = load_assembly(path, session=session)  # an invalid recipe raises: exit code 2
        roles = ", ".join(f"{role}={spec.name}" for role, spec in assembly.components.items())
        lines.append(f"valid: {roles}")
    else:
        lines.append("the file is not present in this checkout")
    return "\n".join(lines)


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]], indent: str = "") -> list[str]:
    """Left-aligned columns; the last column is not padded."""
    rows = [tuple(str(cell) for cell in row) for row in [header, *rows]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return [(indent + "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]])).rstrip()
            for row in rows]


def assembly_json_schema(session: Session) -> dict[str, Any]:
    """JSON Schema of assembly files; each component's ``params`` are typed by its Config.

    Required params are not marked required: presets and derived values may supply them.
    """
    entries = [(entry, model) for entry in session.registry.entries() if (model := _config_model(entry))]
    models = [AssemblyEnvelope, *{model for _, model in entries}]
    refs, definitions = models_json_schema([(model, "validation") for model in models],
                                           title="rae-framework assembly")
    defs = definitions.get("$defs", {})
    for _, model in entries:
        defs[refs[(model, "validation")]["$ref"].rsplit("/", 1)[-1]].pop("required", None)
    variants = [_component_variant(session, entry, refs[(model, "validation")]) for entry, model in entries
                if entry.kind != STAGE_KIND]
    root = dict(defs.pop("AssemblyEnvelope"))
    root["required"] = ["name"]
    if variants:
        root["properties"]["components"]["additionalProperties"] = {"anyOf": variants}
    stages = {entry.name: refs[(model, "validation")] for entry, model in entries if entry.kind == STAGE_KIND}
    root["properties"]["stages"] = {"type": "object", "description": root["properties"]["stages"].get("description"),
                                    "properties": stages, "additionalProperties": False}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **root,
            "title": "rae-framework assembly", "$defs": defs}


def _config_model(entry: Entry) -> type[BaseModel] | None:
    try:
        return entry.load_config_model()
    except Exception:  # noqa: BLE001 - a component whose Config cannot be imported is left out of the schema
        return None


def _component_variant(session: Session, entry: Entry, params_ref: dict[str, Any]) -> dict[str, Any]:
    """One component's envelope: every field of :class:`ComponentEnvelope`, with name, kind, preset and
    params narrowed to this component (a test keeps the two field sets equal)."""
    presets = [preset.name for preset in session.presets.all(entry.kind) if preset.component == entry.name]
    fields = ComponentEnvelope.model_fields
    narrowed = {"kind": {"const": entry.kind}, "name": {"const": entry.name},
                "preset": {"enum": [*presets, None]} if presets else {"type": "null"}, "params": params_ref,
                "checkpoint": {"type": ["string", "null"]}}
    return {
        "type": "object",
        "description": f"{entry.kind} '{entry.name}': {entry.summary}",
        "properties": {name: {**schema, "description": fields[name].description} for name, schema in narrowed.items()},
        "required": ["name"],
        "additionalProperties": False,
    }
