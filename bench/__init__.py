"""Interlock's benchmark suite: `make bench` (everything) and `make bench-quick` (a subset)."""
