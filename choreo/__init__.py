"""Choreo Mesh: an event-driven mesh of AI agents on Kafka.

This package is the public Python surface: what it exports (``__all__``) is promised across
releases. Everything under ``choreo.services`` (the services and their runtime) and
``choreo.schemas`` (the wire records) stays importable, but is not promised.

Run a mesh from the command line (``choreo up mesh.yaml``, ``choreo submit``, ``choreo trace``);
the wire contract for producers in any language is in docs/CONTRACT.md.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("choreo-mesh")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
