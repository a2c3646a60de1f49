"""Prometheus metrics of every service: one registry, named by Prometheus conventions.

Labels are bounded (agent, model, topic, status, reason: all from the mesh spec or fixed
enums), never trace ids. ``serve`` exposes ``/metrics`` on the port from the settings.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

STEP_DURATION = Histogram(
    "choreo_step_duration_seconds", "Wall time of one agent step, model calls included.",
    ["agent"], buckets=_LATENCY_BUCKETS,
)
STEPS = Counter("choreo_steps_total", "Agent steps by outcome.", ["agent", "status"])
MODEL_CALL_DURATION = Histogram(
    "choreo_model_call_duration_seconds", "Latency of one model call, retries included.",
    ["agent", "model"], buckets=_LATENCY_BUCKETS,
)
MODEL_CALL_ERRORS = Counter(
    "choreo_model_call_errors_total", "Model calls that failed after all retries.",
    ["agent", "model", "reason"],
)
MODEL_RETRIES = Counter(
    "choreo_model_retries_total", "Model call attempts that were retried.",
    ["model", "status"],
)
TOKENS = Counter("choreo_tokens_total", "Model tokens by direction.",
                 ["agent", "model", "direction"])
COST = Counter("choreo_cost_usd_total", "Model cost in US dollars.", ["agent", "model"])
TOOL_RUNS = Counter("choreo_tool_runs_total", "Tool runs by status.", ["tool", "status"])
VERDICTS = Counter("choreo_verdicts_total", "Watchdog verdicts by action and reason.",
                   ["action", "reason"])
CONFLICTS = Counter("choreo_state_conflicts_total", "State write conflicts by field and policy.",
                    ["field", "policy"])
DEAD_LETTERS = Counter("choreo_dead_letters_total", "Records sent to the dead-letter topic.",
                       ["consumer", "topic"])
TRACES_FINISHED = Counter("choreo_traces_finished_total", "Traces by terminal status.",
                          ["status"])
TRACES_ADMITTED = Counter("choreo_traces_admitted_total", "Tasks admitted as new traces.")
TRACES_IN_FLIGHT = Gauge("choreo_traces_in_flight", "Traces admitted and not yet finished.")
FOLDS = Counter("choreo_state_folds_total", "Deltas folded into state, by outcome.", ["outcome"])
CONSUMER_LAG = Gauge("choreo_consumer_lag_records", "Records behind the high watermark.",
                     ["group", "topic"])


def serve(port: int | None) -> int | None:
    """Expose ``/metrics`` on ``port`` (0 picks a free one); return the bound port."""
    if port is None:
        return None
    server, _thread = start_http_server(port, addr="127.0.0.1" if port == 0 else "0.0.0.0")
    bound: int = server.server_port
    return bound
