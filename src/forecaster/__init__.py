"""forecaster: campaign-aware fresh-produce demand forecasts on the SageMaker contract."""

__version__ = "0.1.0"
