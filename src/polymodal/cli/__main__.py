"""``python -m polymodal.cli``: worked when the command was one module, cli.py; kept working for the package."""

import sys

from . import main

sys.exit(main())
