"""``python -m tools.train``: see :mod:`tools.train.train`."""

import sys

from .train import main

sys.exit(main())
