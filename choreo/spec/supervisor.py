"""A supervisor's plan as declared in the mesh spec (the ``plan:`` of a supervisor agent).

Kept apart from the supervisor's logic so the spec can validate a plan without importing it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
TOPIC_PATTERN = r"^[A-Za-z0-9._-]{1,200}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageSpec(_Strict):
    """One piece of work: assigned as event type ``assign``, answered as ``returns``.

    The worker writes its result to state field ``result``; the supervisor judges it against
    ``judge`` (no criteria: accepted as is). On a fail the judge's reasons go to state field
    ``feedback`` and the stage is assigned again, at most ``max_attempts`` times in all.
    """

    name: str = Field(pattern=NAME_PATTERN)
    assign: str = Field(pattern=TOPIC_PATTERN)
    returns: str = Field(pattern=TOPIC_PATTERN)
    result: str
    after: list[str] = Field(default_factory=list)
    judge: str | None = None
    feedback: str | None = None
    max_attempts: int = Field(3, ge=1, le=20)


class PlanSpec(_Strict):
    """Stages and their order; stages whose ``after`` are all passed run in parallel.

    ``state`` names the field where the supervisor keeps its progress (event-sourced like any
    field, so a restarted supervisor resumes). ``arrivals`` names an ``append`` field each
    worker's result route writes its stage name to: the supervisor reads it to know when every
    stage of a parallel round is back. A plan that is a single chain never runs two stages at
    once and needs no ``arrivals``.
    """

    stages: list[StageSpec] = Field(min_length=1)
    output: str
    state: str = "plan"
    arrivals: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PlanSpec:
        names = [s.name for s in self.stages]
        for i, stage in enumerate(self.stages):
            if names.count(stage.name) > 1:
                raise ValueError(f"stages[{i}].name: duplicate stage {stage.name!r}")
            earlier = set(names[:i])
            unknown = [a for a in stage.after if a not in earlier]
            if unknown:
                raise ValueError(f"stages[{i}].after: {unknown} must name earlier stages")
        returns = [s.returns for s in self.stages]
        if len(set(returns)) != len(returns):
            raise ValueError("stages: each stage needs its own `returns` event type")
        if not self.is_chain and self.arrivals is None:
            raise ValueError(
                "arrivals: a plan with parallel stages needs an `append` field "
                "that each worker's result route writes its stage name to"
            )
        return self

    @property
    def is_chain(self) -> bool:
        """True when stages run strictly one after another, so no round has two stages."""
        return all(
            s.after == ([] if i == 0 else [self.stages[i - 1].name])
            for i, s in enumerate(self.stages)
        )

    def stage(self, name: str) -> StageSpec:
        return next(s for s in self.stages if s.name == name)
