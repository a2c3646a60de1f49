"""A mesh on one machine: a group of service processes, ``choreo up``'s launch and
supervision, the folder's running mesh, the shipped examples, and every agent kind assembled.
"""
