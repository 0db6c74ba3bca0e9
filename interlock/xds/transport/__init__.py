"""The xDS transport: gRPC services, streams and sessions (state of the world and delta),
subscriptions, the snapshot cache, encoded contents and the status registry.

It knows xDS and nothing of the mesh: no domain model, no translator, no naming rules (one
import-linter contract guards it). What to serve comes in as snapshots keyed by opaque strings;
who may open a stream is decided by an ``OpenStream`` hook the glue supplies.
"""
