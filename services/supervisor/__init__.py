"""The supervisor: holds a trace's plan in its state, assigns stages to workers, gathers and
judges their results, and follows up or finishes (see docs/ORCHESTRATION.md)."""
