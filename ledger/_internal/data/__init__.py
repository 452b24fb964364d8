"""Task data: records, their data hash, and the real data shipped."""
