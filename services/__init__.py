"""Choreo Mesh services: the shared runtime and one package per service."""
