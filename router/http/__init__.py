"""The daemon's HTTP layer: app factory, middlewares, and one module per API surface."""
