"""The supervisor: holds a trace's plan in its state, assigns stages to workers, gathers and
judges their results, and follows up or finishes (see docs/ORCHESTRATION.md). It runs as a
behaviour of the generic agent loop, registered here as the ``supervisor`` agent kind."""

from choreo.agent.kinds import register
from choreo.supervisor.behaviour import Supervisor

register("supervisor", Supervisor)
