"""The operations the CLI and the public API run: init, add, unlearn, rotate, serve, read."""
