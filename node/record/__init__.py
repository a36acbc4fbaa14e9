"""node/record."""
