"""The scenario format described: its JSON Schema (draft 2020-12) and the field listing that
`clustersim schema` prints, both read off the pydantic models of :mod:`simulator.planning.schema`."""

from __future__ import annotations

from simulator.planning.schema import SECTIONS, Scenario


def json_schema() -> dict:
    """The scenario file's JSON Schema (draft 2020-12), for editors and validators."""
    schema = Scenario.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "clustersim scenario"}


def schema_dict() -> dict:
    """The schema as data: section -> field -> {kind, default, doc, required, choices}."""
    out = {}
    for title, model in SECTIONS.items():
        out[title] = {}
        for n, f in model.model_fields.items():
            entry = {"kind": _kind_of(f.annotation), "doc": f.description or "", "required": f.is_required(),
                     "default": None if f.is_required() else f.default}
            out[title][n] = entry
    return out


def _kind_of(annotation) -> str:
    text = str(annotation)
    for token, kind in (("list[", "list"), ("Literal", "choice"), ("bool", "bool"), ("int", "int"),
                        ("float", "float"), ("dict", "mapping"), ("Spec", "section"), ("str", "str")):
        if token in text:
            return kind
    return "value"


def schema_text() -> str:
    """Every scenario field with its type, default and meaning (what `clustersim schema` prints)."""
    lines = []
    for title, fields in schema_dict().items():
        lines.append(f"{title}:")
        for n, f in fields.items():
            default = "required" if f["required"] else f"default {_yaml_value(f['default'])}"
            lines.append(f"  {n:<21} {f['kind']:<8} {default:<18} {f['doc']}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _yaml_value(v) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, str) else str(v)


__all__ = ["json_schema", "schema_dict", "schema_text"]
