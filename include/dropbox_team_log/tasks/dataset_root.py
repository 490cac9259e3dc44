"""The dataset root as every task opens it: resolved once, its S3 credentials in place.

`deployment` resolves the root (absolute, from AIRFLOW_HOME when relative) and reads the AWS
connection Variable; here the connection is applied to the task's process, and a connection
that cannot work fails the task at once, saying what to fix (retrying cannot help).
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException

from dropbox_team_log import deployment
from dropbox_team_log.errors import ConnectionConfigError


def open_dataset_root() -> tuple[str, str | None]:
    """The deployment's dataset root and AWS connection id, the connection in use for S3."""
    root, aws_conn_id = deployment.output_root(), deployment.aws_conn_id()
    use_aws_connection(root, aws_conn_id)
    return root, aws_conn_id


def use_aws_connection(root: str, aws_conn_id: str | None) -> None:
    """`deployment.use_aws_connection`, its ConnectionConfigError an AirflowFailException."""
    try:
        deployment.use_aws_connection(root, aws_conn_id)
    except ConnectionConfigError as exc:
        raise AirflowFailException(str(exc)) from None
