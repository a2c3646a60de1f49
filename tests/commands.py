"""Commands the tests run as real processes, started the way `choreo up` starts its children."""

import sys

#: ``choreo`` with this interpreter; ``-P`` keeps the current folder off the import path.
CHOREO = [sys.executable, "-P", "-m", "choreo.cli.main"]
