"""``python -m convgrad``: see :mod:`convgrad.cli`."""

import sys

from convgrad.cli import main

if __name__ == "__main__":  # not when verify's worker processes (spawn) import this module
    sys.exit(main())
