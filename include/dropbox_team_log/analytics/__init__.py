"""What analysts read: DuckDB views over the dataset, and the HTML report built from them."""
