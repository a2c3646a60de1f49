"""The offline scripted model: an OpenAI-compatible chat server answering from a YAML script."""

from choreo.model_server.process import (
    model_server,
    start_model_server_process,
    stop_model_server_process,
)
from choreo.model_server.script import Script, ScriptError, load_script, parse_script
from choreo.model_server.server import ScriptedModel, serve
from choreo.models.scripted import SCRIPTED_HEADER

__all__ = [
    "SCRIPTED_HEADER",
    "Script",
    "ScriptError",
    "ScriptedModel",
    "load_script",
    "model_server",
    "parse_script",
    "serve",
    "start_model_server_process",
    "stop_model_server_process",
]
