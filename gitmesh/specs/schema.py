"""JSON Schemas generated from the spec models, for editors and pull-request checks. Pure."""

from __future__ import annotations

import json
from typing import Any

from gitmesh import specs

FILES: dict[str, type[specs.Strict]] = {
    "remoteistio.schema.json": specs.RemoteIstio,
    "istiodremote.schema.json": specs.IstiodRemote,
    "mesh.schema.json": specs.Mesh,
}


def generate() -> dict[str, str]:
    """File name -> schema text (deterministic: sorted keys, trailing newline)."""
    out = {}
    for name, model in FILES.items():
        schema: dict[str, Any] = model.model_json_schema(by_alias=True)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://gitmesh.io/schemas/{name}"
        out[name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out
