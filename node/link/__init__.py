"""node/link."""
