"""Envoy bootstrap templates, installed as the package ``interlock.envoy_configs``."""
