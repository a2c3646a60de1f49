"""JSON encoding of wire records that keeps unknown fields.

msgspec drops fields a Struct does not declare; a mesh where an old service silently strips a
newer producer's fields loses data. So decoding collects the undeclared keys into
``extensions`` and encoding writes them back at the top level.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import msgspec

from choreo.schemas.errors import ChoreoError
from choreo.schemas.records import Record

R = TypeVar("R", bound=Record)

_json_encoder = msgspec.json.Encoder()
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_raw_decoder = msgspec.json.Decoder(dict[str, Any])


class DecodeError(ChoreoError, ValueError):
    """A record's bytes are not a valid instance of the expected type; the message says why."""


def encode(record: Record) -> bytes:
    """Encode a record to JSON, restoring its unknown fields at the top level."""
    body = msgspec.to_builtins(record)
    extras = body.pop("extensions")
    return _json_encoder.encode({**extras, **body} if extras else body)


def decode(data: bytes, record_type: type[R]) -> R:
    """Decode and validate ``data``; raise :class:`DecodeError` naming the bad field.

    Invalid UTF-8 is refused; a lone surrogate escape (``"\\ud83d"``) is valid JSON that
    msgspec refuses, so such a record is read again leniently with every lone surrogate
    replaced (see ``clean_text``). Nesting too deep for the interpreter's stack is refused too.
    """
    try:
        return _decode(data, record_type)
    except RecursionError:
        raise DecodeError(f"invalid {record_type.__name__}: nested too deeply") from None


def _decode(data: bytes, record_type: type[R]) -> R:
    try:
        raw = _raw_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raw = _lenient(data, exc)
    known = set(record_type.__struct_fields__) - {"extensions"}
    extras = {k: v for k, v in raw.items() if k not in known}
    body = {k: v for k, v in raw.items() if k in known}
    if extras:
        body["extensions"] = {**body.get("extensions", {}), **extras}
    try:
        return msgspec.convert(body, record_type, strict=False)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"invalid {record_type.__name__}: {exc}") from None


def _lenient(data: bytes, error: msgspec.DecodeError) -> dict[str, Any]:
    """``data`` as a JSON object with lone surrogates replaced, or the original error."""
    refused = DecodeError(f"not a JSON object: {error}")
    if b"\\u" not in data:
        raise refused from None
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError):  # invalid UTF-8 or JSON alike; or too deep
        raise refused from None
    if not isinstance(value, dict):
        raise refused
    return clean_value(value)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def clean_value(value: Any) -> Any:
    """``value`` with ``clean_text`` applied to every string in it, keys included (lists
    and tuples become lists); for what user code writes to state and payloads."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list | tuple):
        return [clean_value(v) for v in value]
    if isinstance(value, dict):
        return {clean_value(k): clean_value(v) for k, v in value.items()}
    return value


def to_json(value: Any) -> bytes:
    """Encode any builtin-like value as JSON (state fields, payloads)."""
    return _json_encoder.encode(value)


def as_text(value: Any) -> str:
    """A state value as text for a person or a prompt: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else to_json(value).decode()


def clean_text(text: str) -> str:
    """``text`` with every lone UTF-16 surrogate replaced by U+FFFD, so it always encodes.

    JSON may escape half a surrogate pair (``"\\ud83d"``, as some servers send for a cut
    emoji); Python decodes it into a ``str`` that no UTF-8 encoder accepts. Every text that
    enters the mesh from outside (model replies, tool output, task input) passes here.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text)
    return text


def cut_text(text: str, limit_bytes: int) -> tuple[str, int]:
    """``text`` cut to at most ``limit_bytes`` of UTF-8 (never inside a character), and its
    full size in bytes. The text must be clean (see ``clean_text``)."""
    data = text.encode("utf-8")
    if len(data) <= limit_bytes:
        return text, len(data)
    return data[:limit_bytes].decode("utf-8", "ignore"), len(data)
