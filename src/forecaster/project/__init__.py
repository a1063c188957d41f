"""The SageMaker project template's seed code: model-build and model-deploy repositories (see :mod:`.seed`)."""
