"""Every error Choreo raises to its users, under one root.

Catch ``ChoreoError`` for all of them, or one kind by its class. Each class also derives from
the builtin it stands for (in brackets), so code that catches the builtin keeps working::

    ChoreoError
    ├── SpecError          [ValueError]    the mesh spec is invalid: its file and fields named
    ├── SettingsError      [ValueError]    a CHOREO_* variable has a value the settings refuse
    ├── ModelConfigError   [ValueError]    a model tier cannot be reached as configured
    ├── ScriptError        [ValueError]    a scripted model's script is missing or invalid
    ├── ImportPathError    [ImportError]   a handler or tool path names nothing importable
    ├── DecodeError        [ValueError]    a record's bytes are not the record expected
    ├── BlobMismatch       [ValueError]    a state value by reference is missing or does not
    │                                      match its hash
    ├── ReducerError       [ValueError]    a write does not fit its state field's reducer
    ├── RecordTooLarge     [ValueError]    a record would pass the broker's size limit
    ├── NoBrokerAddress    [ValueError]    no broker address is given, set or announced
    ├── BrokerError        [RuntimeError]  no broker could be found or started
    ├── BrokerOutage       [RuntimeError]  the broker did not answer for CHOREO_BROKER_OUTAGE_S
    ├── BrokerRefused      [PermissionError] the broker refused this client: credentials,
    │                                      certificate or a missing ACL, named
    ├── Fenced             [RuntimeError]  another process owns this input now
    ├── TopicsRefused      [RuntimeError]  the broker refused to create the mesh's topics
    ├── ServiceStartError  [RuntimeError]  a server of the mesh did not start
    ├── MeshAlreadyUp      [RuntimeError]  a ``choreo up`` already runs from this folder
    ├── ServiceFailed      [RuntimeError]  a service of a mesh under test (choreo.testing)
    │                                      ended on its own (.service, .error)
    ├── ModelError         [RuntimeError]  a model call failed for good (.reason, .attempts,
    │                                      .usage)
    ├── BudgetExhausted                    a step asked for a model call with a budget used up
    │   └── OverBudget     [RuntimeError]  the step's share of the budget cannot pay for the
    │                                      call (.rule, .details, .spent)
    ├── HandlerError                       an agent function broke the step's contract
    │   └── UndeclaredRead [KeyError]      a Python agent read a field not in its reads (.field)
    ├── ToolError                          raised by a tool: its message goes to the model
    ├── ToolSetupError     [RuntimeError]  an agent's tools cannot be offered
    │   └── McpUnavailable                 an MCP server could not be started, reached or listed
    ├── SandboxError       [RuntimeError]  the sandbox service was unreachable or refused the
    │                                      request: nothing ran
    ├── TraceNotFound      [LookupError]   no record of the trace asked for
    │   └── VersionNotFound                the trace never reached the state version asked for
    ├── MeshNotRunning     [LookupError]   the named mesh has no topics or no live services
    ├── EscalationError    [LookupError]   no open escalation by that id
    ├── DeadLetterNotFound [LookupError]   no dead letter by that id (PARTITION:OFFSET)
    ├── ResultTimeout      [TimeoutError]  a trace did not end within the time waited
    └── MeshNotReady       [TimeoutError]  a mesh under test was not given its partitions in
                                           time

The ``choreo`` command prints the message of any of them on one line and exits 2 for bad
input (``SpecError``, ``SettingsError``, ``ModelConfigError``, ``ScriptError``,
``NoBrokerAddress``), else 1.

Each class is defined in a light module of its own layer (``choreo.models.errors``,
``choreo.kafka.errors``, ...), so importing this module loads no Kafka, HTTP, metrics or
tracing library; the modules that raise them import them from there. Following httpx, whose
``_exceptions`` module draws its tree the same way.
"""

from choreo.budget.allowance import OverBudget
from choreo.client.errors import (
    DeadLetterNotFound,
    EscalationError,
    MeshNotRunning,
    ResultTimeout,
    TraceNotFound,
    VersionNotFound,
)
from choreo.kafka.errors import (
    BrokerError,
    BrokerOutage,
    BrokerRefused,
    Fenced,
    RecordTooLarge,
    TopicsRefused,
)
from choreo.local.announce import MeshAlreadyUp, NoBrokerAddress
from choreo.local.processes import ServiceStartError
from choreo.models.errors import ModelConfigError, ModelError, ScriptError
from choreo.observe.errors import SettingsError
from choreo.schemas.blobs import BlobMismatch
from choreo.schemas.codec import DecodeError
from choreo.schemas.errors import (
    BudgetExhausted,
    ChoreoError,
    HandlerError,
    ToolError,
    UndeclaredRead,
)
from choreo.schemas.reducers import ReducerError
from choreo.spec.errors import SpecError
from choreo.testing.errors import MeshNotReady, ServiceFailed
from choreo.tools.errors import McpUnavailable, SandboxError, ToolSetupError
from choreo.tools.imports import ImportPathError

__all__ = [
    "BlobMismatch",
    "BrokerError",
    "BrokerOutage",
    "BrokerRefused",
    "BudgetExhausted",
    "ChoreoError",
    "DeadLetterNotFound",
    "DecodeError",
    "EscalationError",
    "Fenced",
    "HandlerError",
    "ImportPathError",
    "McpUnavailable",
    "MeshAlreadyUp",
    "MeshNotReady",
    "MeshNotRunning",
    "ModelConfigError",
    "ModelError",
    "NoBrokerAddress",
    "OverBudget",
    "RecordTooLarge",
    "ReducerError",
    "ResultTimeout",
    "SandboxError",
    "ScriptError",
    "ServiceFailed",
    "ServiceStartError",
    "SettingsError",
    "SpecError",
    "ToolError",
    "ToolSetupError",
    "TopicsRefused",
    "TraceNotFound",
    "UndeclaredRead",
    "VersionNotFound",
]
