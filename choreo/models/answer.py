"""What a model call returns: the answer's text, the tool calls it asks for, and its usage."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from choreo.schemas import Usage

#: One chat message: ``role`` and ``content``, plus ``tool_calls`` (assistant) or
#: ``tool_call_id`` (tool) in a tool-calling conversation.
Message = dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for; ``arguments`` is the JSON text it sent."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Completion:
    """One model answer; ``scripted`` is true when an offline scripted model wrote it.

    ``tool_calls`` holds the calls the model asked for instead of (or besides) answering;
    ``text`` is then often empty.
    """

    text: str
    usage: Usage
    scripted: bool
    tool_calls: tuple[ToolCall, ...] = ()

    def message(self) -> Message:
        """The answer as the assistant message that continues the conversation."""
        message: Message = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in self.tool_calls
            ]
        return message


def filled_id(request: dict[str, Any], index: int) -> str:
    """The id of the ``index``-th tool call of an answer that gave it none (several
    OpenAI-compatible servers omit ids): a digest of the request body and the index, so a
    replayed step names its calls the same, and two turns of a conversation never share one.
    Computed only for an answer that needs it."""
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode())
    digest.update(f":{index}".encode())
    return "call_" + digest.hexdigest()[:24]
