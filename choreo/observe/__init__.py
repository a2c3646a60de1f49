"""What every service and the CLI use to be seen: settings from the environment, structured
logs, Prometheus metrics, OpenTelemetry spans, and terminal output that never reads text as
markup.
"""
