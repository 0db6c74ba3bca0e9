"""Interlock: a service mesh for stock Envoy, without Kubernetes."""

__version__ = "0.1.0"
