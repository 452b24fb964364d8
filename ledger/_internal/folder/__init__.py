"""The ledger folder: layout, safe file access, the DuckDB store, journal, checks."""
