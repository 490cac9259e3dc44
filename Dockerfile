# The project's Airflow image: the official base plus this project's exact lock and package.
# Every component (api-server, scheduler, dag-processor, triggerer, celery workers) runs it, so
# tasks and the provider's connection type are the same everywhere.
#
# Two stages (docker-compose.yaml names the target):
#   airflow   the production image: the base, requirements.txt (the runtime lock; test tools are
#             in requirements-test.txt), the dropbox_team_log package and the DAG files.
#             Nothing else: no emulator, no demo, no tests.
#   emulator  the airflow stage plus the Dropbox API emulator (emulator/, a dev tool), for the
#             compose `demo` profile only.
# A plain `docker build .` (no --target) gives the production image: the last stage is it.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS airflow

# Installed as the airflow user (the base image's rule); the lock pins apache-airflow itself, so
# the base's Airflow is kept as it is, and pip fails rather than resolving anything else.
USER airflow
COPY --chown=airflow:0 requirements.txt /opt/project/requirements.txt
RUN pip install --no-cache-dir -r /opt/project/requirements.txt
# Only the production package's source: pyproject.toml packages `dropbox_team_log*` alone.
COPY --chown=airflow:0 pyproject.toml README.md /opt/project/
COPY --chown=airflow:0 include/dropbox_team_log /opt/project/include/dropbox_team_log
RUN pip install --no-cache-dir --no-deps /opt/project

# Arrow allocates from the system allocator, which hands freed buffers back to the OS, instead of
# mimalloc's per-thread heaps: a day's sync peaks ~50 MB lower
# (dropbox_team_log.tasks.worker_memory).
ENV ARROW_DEFAULT_MEMORY_POOL=system

# The DAG files are baked in too (a compose deployment mounts ./dags over them while developing).
COPY --chown=airflow:0 dags /opt/airflow/dags

# The demo image: the production image plus the emulator (its only dependency, orjson, is in the
# lock already, hence --no-deps). Built by the compose `demo` profile, never deployed.
FROM airflow AS emulator
COPY --chown=airflow:0 emulator /opt/project/emulator
RUN pip install --no-cache-dir --no-deps /opt/project/emulator

# The default target: the production image, unchanged.
FROM airflow
