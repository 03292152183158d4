"""Support code for zarrcrop's benchmark suite (datasets, readers, cases, results)."""
