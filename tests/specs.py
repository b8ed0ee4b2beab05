"""The vendors' own API descriptions (../shared/specs beside the checkout) as JSON Schemas, for checking what the
sandboxes answer. Without the files the checks skip on a developer's machine and fail where they are required
(ZOOMCAL_REQUIRE_SPECS, set by CI)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import jsonschema
import pytest

SPECS = Path(os.environ.get("ZOOMCAL_SPECS", Path(__file__).resolve().parents[2] / "shared" / "specs"))


def require_specs() -> None:
    """Call at the top of a test (or use the `specs` fixture) that reads the vendor files."""
    if SPECS.exists():
        return
    if os.environ.get("ZOOMCAL_REQUIRE_SPECS") or os.environ.get("CI"):
        pytest.fail(f"vendor specs required but missing at {SPECS} (set ZOOMCAL_SPECS)")
    pytest.skip(f"vendor specs not found at {SPECS}")


@lru_cache
def _zoom_doc(name: str) -> dict:
    require_specs()
    return json.loads((SPECS / "zoom" / name).read_text())

def _drop_weekly_days_enum(node):
    """Spec quirk: `weekly_days` is typed as one of "1".."7" while its own text (and the API) takes "1,3"."""
    if isinstance(node, dict):
        return {k: ({kk: vv for kk, vv in v.items() if kk != "enum"} if k == "weekly_days" and isinstance(v, dict)
                    else _drop_weekly_days_enum(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_drop_weekly_days_enum(v) for v in node]
    return node


def zoom_response_schema(doc_name: str, path: str, method: str, status: str) -> dict:
    doc = _zoom_doc(doc_name)
    schema = doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    return _drop_weekly_days_enum({**schema, "components": doc.get("components", {})})


@lru_cache
def google_schema(name: str, document: str = "calendar.v3.json") -> dict:
    """A schema of a Google discovery document (`document`: calendar.v3.json, people.v1.json) as JSON Schema."""
    require_specs()
    doc = json.loads((SPECS / "google" / document).read_text())

    def convert(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return {"$ref": f"#/definitions/{node['$ref']}"}
            out = {}
            for key, value in node.items():
                if key == "type" and value == "any":
                    continue
                if key in ("id", "annotations", "description"):
                    continue
                out[key] = convert(value)
            return out
        if isinstance(node, list):
            return [convert(v) for v in node]
        return node

    definitions = {k: convert(v) for k, v in doc["schemas"].items()}
    return {"$ref": f"#/definitions/{name}", "definitions": definitions}


def validate(instance, schema) -> None:
    jsonschema.validate(instance, schema, cls=jsonschema.Draft7Validator)




@lru_cache
def _graph_doc(file: str) -> dict:
    """A Graph YAML slice with its schemas as JSON Schema: `nullable` becomes a null alternative, and the SDK's
    blanket `additionalProperties: {type: object}` (which would clash inside allOf) is dropped."""
    import yaml

    require_specs()

    doc = yaml.load((SPECS / "microsoft" / file).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))

    def convert(node):
        if isinstance(node, dict):
            out = {k: convert(v) for k, v in node.items() if k not in ("additionalProperties", "nullable",
                                                                          "description", "example")}
            if node.get("nullable"):
                return {"anyOf": [out, {"type": "null"}]}
            return out
        if isinstance(node, list):
            return [convert(v) for v in node]
        return node

    return convert(doc)


@lru_cache
def graph_schema(name: str, file: str = "graph-v1.0-calendar.yml") -> dict:
    """A Graph schema (`microsoft.graph.event`...) of one of the YAML slices, as JSON Schema."""
    return {"$ref": f"#/components/schemas/{name}", "components": _graph_doc(file)["components"]}


@lru_cache
def graph_response_schema(file: str, path: str, method: str = "get") -> dict:
    """What an operation of a Graph slice answers on success (`2XX`), as JSON Schema."""
    doc = _graph_doc(file)
    answer = doc["paths"][path][method]["responses"]["2XX"]
    if "$ref" in answer:
        answer = doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return {**answer["content"]["application/json"]["schema"], "components": doc["components"]}


def without_annotations(item: dict) -> dict:
    return {k: v for k, v in item.items() if not k.startswith("@")}


