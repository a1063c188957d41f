"""SAGEMAKER_PROGRAM of the training image: the toolkit runs this file from /opt/ml/code."""

import sys

from forecaster.sagemaker_train import main

sys.exit(main())
