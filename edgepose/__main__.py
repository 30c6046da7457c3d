"""``python -m edgepose``: the same as the ``edgepose`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
