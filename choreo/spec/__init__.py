"""The mesh spec: agents, state fields and reducers, model tiers, budgets, the watchdog's
and supervisor's parts, loaded from YAML and checked as a whole before anything runs.
"""
