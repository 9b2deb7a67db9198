"""Results: schema, atomic files, Parquet tables."""
