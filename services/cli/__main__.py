"""`python -m services.cli`: the `kizuna` command (how the stack starts its services)."""

import sys

from services.cli import main

sys.exit(main())
