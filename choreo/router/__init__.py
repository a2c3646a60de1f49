"""The router: classifies each task once and sends it to exactly one worker (see
docs/ORCHESTRATION.md). It runs as a behaviour of the generic agent loop, registered here as
the ``router`` agent kind."""

from choreo.agent.kinds import register
from choreo.router.behaviour import Router

register("router", Router)
