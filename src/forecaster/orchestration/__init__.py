"""Airflow orchestration around the pipelines (the DAGs in ``pipeline/airflow/`` call these functions).

- :mod:`~forecaster.orchestration.config`: the configuration (Airflow Variable + DAG params), read once;
- :mod:`~forecaster.orchestration.storage`: local folders and ``s3://`` prefixes behind one small interface;
- :mod:`~forecaster.orchestration.extract`: gather and validate the source drops, write the pipeline inputs;
- :mod:`~forecaster.orchestration.backends`: run a pipeline locally; start once and read back a SageMaker execution;
- :mod:`~forecaster.orchestration.operators`: the Amazon provider's SageMaker operator and sensor, as DAG tasks;
- :mod:`~forecaster.orchestration.deliver`: per-store order proposals and forecasts, atomic and idempotent;
- :mod:`~forecaster.orchestration.tasks`: the task callables;
- :mod:`~forecaster.orchestration.dags`: the DAGs' building blocks (with ``tasks`` and ``operators``, the only
  modules that import Airflow).

This layer sits on top: it may import the pipelines, the registry and the checks; nothing else imports it.
"""
