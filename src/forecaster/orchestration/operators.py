"""The Amazon provider's SageMaker pipeline operator and sensor, as the DAGs use them (imports Airflow).

- :class:`StartPipelineOnce` is ``SageMakerStartPipelineOperator`` with an idempotent start: the execution's
  display name and ``ClientRequestToken`` come from the DAG id and the run id, and a retry finds the execution
  an earlier try started instead of starting a second one. With ``deferrable=True`` it defers to the provider's
  ``SageMakerPipelineTrigger`` until the execution ends (a triggerer must run).
- :class:`PipelineSucceeded` is ``SageMakerPipelineSensor`` that also fails on ``Stopped`` and fails at once (a
  failed execution is not retried by re-poking it).
"""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerStartPipelineOperator
from airflow.providers.amazon.aws.sensors.sagemaker import SageMakerPipelineSensor
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerPipelineTrigger
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from forecaster.orchestration import backends


class StartPipelineOnce(SageMakerStartPipelineOperator):
    """``SageMakerStartPipelineOperator`` that starts one execution per DAG run, however often it is retried."""

    def execute(self, context: Any) -> str:
        """Find this run's execution or start it; defer until it ends when ``deferrable``; return its ARN."""
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        self.display_name = backends.display_name(dag_id, run_id)
        arn = backends.start_once(
            self.hook.conn,
            self.pipeline_name,
            self.display_name,
            backends.request_token(dag_id, run_id),
            self.pipeline_params,
        )
        if self.deferrable:
            self.defer(
                trigger=SageMakerPipelineTrigger(
                    waiter_type=SageMakerPipelineTrigger.Type.COMPLETE,
                    pipeline_execution_arn=arn,
                    waiter_delay=self.check_interval,
                    waiter_max_attempts=self.waiter_max_attempts,
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name,
                    verify=self.verify,
                    botocore_config=self.botocore_config,
                ),
                method_name="execute_complete",
            )
        return arn


class PipelineSucceeded(SageMakerPipelineSensor):
    """``SageMakerPipelineSensor`` that fails, without retries, on ``Failed`` and on ``Stopped``."""

    def failed_states(self) -> set[str]:
        """Failed and Stopped (the provider's sensor succeeds on Stopped)."""
        return {*super().failed_states(), "Stopped"}

    def get_failed_reason_from_response(self, response: dict) -> str:
        """The execution's status and failure reason, and each failed step's (SageMaker's own is generic)."""
        reason = f"{response.get('PipelineExecutionStatus')}: {response.get('FailureReason') or 'no reason given'}"
        steps = backends.failed_steps(self.hook.conn, self.pipeline_exec_arn)
        return f"{reason} ({steps})" if steps else reason

    def poke(self, context: Any) -> bool:
        """Done when the execution succeeded; a failed or stopped one fails the task at once."""
        try:
            return super().poke(context)
        except AirflowException as error:
            if isinstance(error, AirflowFailException):
                raise
            raise AirflowFailException(
                f"SageMaker pipeline execution {self.pipeline_exec_arn} failed: {error}"
            ) from None
