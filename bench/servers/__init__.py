"""Reference servers the hub is compared with (fan-out benchmark)."""
