"""`python -m gateway.cli`: what the installed `custos` script runs (a `serve --processes N` child too)."""

import sys

from gateway.cli import main

sys.exit(main())
