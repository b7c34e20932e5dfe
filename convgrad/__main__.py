"""``python -m convgrad``: see :mod:`convgrad.cli`."""

import sys

from convgrad.cli import main

sys.exit(main())
