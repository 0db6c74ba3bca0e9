"""What the control plane learns from the traffic itself: the access logs sidecars stream to it
(ALS), the live service graph built from them, and the control plane's own metrics."""
