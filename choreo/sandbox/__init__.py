"""The sandbox: runs code that agents generate, isolated, never on the host.

Layers: bubblewrap namespaces (no network, read-only system, private tmp, unprivileged uid),
a seccomp filter refusing sockets, rlimits, and a wall clock. See docs/SANDBOX.md.
"""

from choreo.sandbox.server import serve
from choreo.tools.sandbox.client import SandboxError, run_code
from choreo.tools.sandbox.limits import SandboxLimits
from choreo.tools.sandbox.protocol import RunRequest, SandboxResult

__all__ = ["RunRequest", "SandboxError", "SandboxLimits", "SandboxResult", "run_code", "serve"]
