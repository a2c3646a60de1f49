"""A JSON schema for a model's answer, in the request shape its tier takes.

OpenAI's ``response_format`` of type ``json_schema`` (OpenAI, vLLM, Ollama, Gemini's
OpenAI-compatible endpoint), or llama-cpp-python's ``json_object`` with a ``schema``, which its
server turns into a grammar the model cannot leave (choreo.spec.mesh.StructuredOutput).
"""

from __future__ import annotations

import json
import re
from typing import Any

from choreo.spec.mesh import StructuredOutput


def schema_format(
    structured: StructuredOutput, name: str, schema: dict[str, Any], *, strict: bool = True
) -> dict[str, Any]:
    """The ``response_format`` asking for an answer that is ``schema``, named ``name``.

    ``strict`` asks OpenAI's strict mode, which takes only an object at the root with every
    property required; a schema that is a choice (``anyOf``) at its root is sent without it.
    """
    if structured == "json_object":
        return {"type": "json_object", "schema": schema}
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": schema, "strict": strict},
    }


def cut_field(answer: str, field: str) -> str | None:
    """The string ``field`` of a JSON answer cut short by its token limit (so not JSON),
    unescaped as far as it goes; None when the answer has no such field."""
    found = re.search(rf'"{re.escape(field)}"\s*:\s*"((?:[^"\\]|\\.)*)', answer, re.DOTALL)
    if found is None:
        return None
    raw = found.group(1)
    for end in range(len(raw), max(len(raw) - 6, -1), -1):  # a cut escape is at most 6 long
        try:
            return str(json.loads(f'"{raw[:end]}"'))
        except ValueError:
            continue
    return raw
