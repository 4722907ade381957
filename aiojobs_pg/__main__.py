"""``python -m aiojobs_pg``: the command line (see :mod:`aiojobs_pg.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
