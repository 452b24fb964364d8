"""Reproducible audit scenarios (`python -m audits.<name>`): real models, real data, reports."""
