"""The sandbox: runs code that agents generate, isolated, never on the host.

Layers: bubblewrap namespaces (no network, read-only system, private tmp, unprivileged uid),
a seccomp filter refusing sockets, rlimits, and a wall clock. See docs/SANDBOX.md.
"""

from choreo.services.sandbox.client import SandboxError, run_code
from choreo.services.sandbox.protocol import RunRequest, SandboxResult
from choreo.services.sandbox.server import serve
from choreo.services.sandbox.settings import SandboxLimits

__all__ = ["RunRequest", "SandboxError", "SandboxLimits", "SandboxResult", "run_code", "serve"]
