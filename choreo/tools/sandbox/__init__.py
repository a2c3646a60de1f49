"""The sandbox as agents reach it: its API protocol, limits, HTTP client, run transcripts,
and the ``sandbox`` tool a model calls. The service that isolates code is choreo.sandbox.
"""
