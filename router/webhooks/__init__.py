"""Webhooks both ways: vendors pushing completions to the router (``inbound``) and the router pushing job
outcomes to apps (``outbound``). ``signing`` is Standard Webhooks (HMAC-SHA256), ``fal`` is fal's ED25519."""
