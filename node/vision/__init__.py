"""node/vision."""
