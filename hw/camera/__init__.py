"""hw/camera."""
