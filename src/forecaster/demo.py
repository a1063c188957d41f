"""Moved to :mod:`forecaster.cli.demo`; kept so ``python -m forecaster.demo`` keeps working."""

import sys

if __name__ == "__main__":
    from forecaster.cli.demo import main

    sys.exit(main())
