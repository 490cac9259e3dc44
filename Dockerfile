# The project's Airflow image: the official base plus this project's pinned lock and package.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:0 requirements.txt pyproject.toml README.md /opt/project/
COPY --chown=airflow:0 include /opt/project/include
RUN pip install --no-cache-dir -r /opt/project/requirements.txt \
 && pip install --no-cache-dir --no-deps /opt/project
