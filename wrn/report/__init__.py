"""Reporting: the results.csv schema and reader, figures, tables and the published numbers."""
