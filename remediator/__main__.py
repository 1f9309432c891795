"""`python -m remediator`: the only place that calls sys.exit."""

import sys

from remediator.cli import main

if __name__ == "__main__":
    sys.exit(main())
