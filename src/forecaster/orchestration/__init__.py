"""Airflow orchestration around the pipelines (the DAGs in ``pipeline/airflow/`` call these functions).

- :mod:`~forecaster.orchestration.config`: the configuration (Airflow Variable + DAG params), read once;
- :mod:`~forecaster.orchestration.storage`: local folders and ``s3://`` prefixes behind one small interface;
- :mod:`~forecaster.orchestration.extract`: gather and validate the source drops, write the pipeline inputs;
- :mod:`~forecaster.orchestration.backends`: start and watch a pipeline, locally or on SageMaker;
- :mod:`~forecaster.orchestration.deliver`: per-store order proposals and forecasts, atomic and idempotent;
- :mod:`~forecaster.orchestration.tasks`: the task callables (the only module that imports Airflow).

This layer sits on top: it may import the pipelines, the registry and the checks; nothing else imports it.
"""
