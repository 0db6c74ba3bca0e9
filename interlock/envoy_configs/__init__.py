"""Envoy bootstrap templates (package data of ``interlock.envoy_configs``: the one copy)."""
