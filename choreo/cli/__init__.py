"""The ``choreo`` command line: run services, start meshes, submit tasks, inspect traces."""
