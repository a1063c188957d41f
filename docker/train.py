"""SAGEMAKER_PROGRAM of the training image: the toolkit runs this file from /opt/ml/code."""

import sys

from forecaster.container.train import main

if __name__ == "__main__":  # worker processes that re-import this file must not train again
    sys.exit(main())
