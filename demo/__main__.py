"""``python -m demo`` is ``camnode-demo``."""

import sys

from demo.cli import main

sys.exit(main())
