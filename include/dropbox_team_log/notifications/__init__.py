"""What tells people a task failed for good: the alert callback of every DAG task."""
