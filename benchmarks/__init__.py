"""Long-running measurements of the mesh, each a script with its figures in docs/BENCHMARKS.md."""
