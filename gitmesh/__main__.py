"""`python -m gitmesh` runs the command line."""

import sys

from gitmesh.cli import main

sys.exit(main())
