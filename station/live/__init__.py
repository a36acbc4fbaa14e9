"""Live view at the station: the media relay's supervisor, stream credentials, live sessions."""
