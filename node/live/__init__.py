"""Live view: the node's main stream (the recorded H.264, passed through) and a small
sub-stream, pushed to the station's media relay on request (``cmd/live``)."""
