"""SageMaker pipelines (SDK v3) of forecaster: the step table, the SDK builder, definitions, upsert, resolver.

- :mod:`.table` (the types) / :mod:`.catalog` (the three pipelines): the pipelines as data (no SDK import),
  shared with the local runner;
- :mod:`.builder` (+ :mod:`.managed`): the SDK v3 objects built from the table;
- :mod:`.definitions`: offline definition JSON, upsert to AWS; :mod:`.sdk`: the SDK's environment, moto;
- :mod:`.resolve`: latest approved model -> pipeline parameters.
"""
