"""camnode: software of one street camera node (a pole with a camera, IR light, SD card)."""

__version__ = "0.1.0"
