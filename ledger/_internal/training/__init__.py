"""The deterministic fine-tune: its spec, loop, sign vector, determinism record, probe."""
