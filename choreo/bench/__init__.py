"""Benchmarks behind ``choreo bench``: measured on real processes and a real broker."""
