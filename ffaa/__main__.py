"""`python -m ffaa ...`: the same command line as `ffaa ...`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
