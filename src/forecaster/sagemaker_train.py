"""Moved to :mod:`forecaster.container.train`; kept so entry scripts written for older images keep working."""

import sys

from forecaster.container.train import JobEnvironment, main, run

__all__ = ["JobEnvironment", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())
