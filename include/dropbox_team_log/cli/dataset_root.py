"""The `--root` option every analyst command shares, and the root it resolves to.

Without `--root` a command reads the dataset the DAGs write: the Airflow Variable (read only
then, so `--root` works without Airflow set up), with the deployment's AWS connection in use
for an S3 root.
"""

from __future__ import annotations

import argparse


def add_root_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        help=(
            "dataset root: a folder or an fsspec URL such as s3://bucket/prefix (default: the "
            "Airflow Variable dropbox_team_log_output, else data/dropbox_team_log)"
        ),
    )


def dataset_root(args: argparse.Namespace) -> str:
    """`--root`, else the deployment's root with its S3 credentials in place."""
    if args.root:
        return args.root
    from dropbox_team_log import deployment  # reads Airflow Variables: only without --root
    from dropbox_team_log.errors import ConnectionConfigError

    root = deployment.output_root()
    try:  # the deployment's S3 credentials too, when it names an AWS connection
        deployment.use_aws_connection(root, deployment.aws_conn_id())
    except ConnectionConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    return root
