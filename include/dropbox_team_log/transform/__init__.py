"""Events as the API sent them -> Arrow record batches of the dataset schema (and, opt-in,
pseudonymised). Pure functions: no I/O, no Airflow."""
