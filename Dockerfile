# The project's Airflow image: the official base plus this project's exact lock and package.
# Every component (api-server, scheduler, dag-processor, triggerer, celery workers) runs it, so
# tasks, the provider's connection type and the emulator are the same everywhere.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

# Installed as the airflow user (the base image's rule); the lock pins apache-airflow itself, so
# the base's Airflow is kept as it is, and pip fails rather than resolving anything else.
USER airflow
COPY --chown=airflow:0 requirements.txt /opt/project/requirements.txt
RUN pip install --no-cache-dir -r /opt/project/requirements.txt
COPY --chown=airflow:0 pyproject.toml README.md /opt/project/
COPY --chown=airflow:0 include /opt/project/include
RUN pip install --no-cache-dir --no-deps /opt/project

# Arrow allocates from the system allocator, which hands freed buffers back to the OS, instead of
# mimalloc's per-thread heaps: a day's sync peaks ~50 MB lower (dropbox_team_log.task_memory).
ENV ARROW_DEFAULT_MEMORY_POOL=system

# The DAG files are baked in too (a compose deployment mounts ./dags over them while developing).
COPY --chown=airflow:0 dags /opt/airflow/dags
