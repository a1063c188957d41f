"""Moved to :mod:`forecaster.container.preflight`; kept so ``python -m forecaster.preflight`` keeps working."""

import sys

from forecaster.container.preflight import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
