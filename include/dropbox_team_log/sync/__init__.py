"""Keeping the dataset exact: which days and seconds are due (planning), how a due range is cut
into concurrent reads (slicing), and the day sync that fetches and writes them (fetch, engine).
No Airflow here: tasks/ calls it with validated settings."""
