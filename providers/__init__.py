"""Provider handlers for tarash-router, one module per vendor, found through entry points."""
