"""What the DAG files call: the parse-time spec (`dag_spec`, light imports only) and the task
bodies (imported inside the tasks, at run time)."""
