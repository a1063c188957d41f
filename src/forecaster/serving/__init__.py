"""The serving half of the SageMaker contract: inference server and local batch transform."""
