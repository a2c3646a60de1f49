"""The watchdog: hard budgets, loop detection and the verdicts that stop runaway traces."""
