"""``make run``: the whole system on one machine — a private broker, the demo node, the station
service, the media relay and the web console. It composes ``node`` and ``station`` from above;
neither of them imports it."""
