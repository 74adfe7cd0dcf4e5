"""Keeping a workspace current: configured sources, `tierwise refresh`, alerts and their deliveries, digests
(docs/refresh.md)."""
