"""The generic worker agent, configured entirely by its entry in the mesh spec."""
