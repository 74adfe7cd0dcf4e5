"""The main job: measures → classes → snapshot, on DuckDB or Spark (`tierwise run`)."""
