"""hw/encode."""
