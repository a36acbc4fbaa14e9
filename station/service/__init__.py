"""``camnode-station serve``: the long-running service that archives every node's messages.

* :mod:`station.service.config` — its config file and command-line overrides;
* :mod:`station.service.session` — the persistent MQTT 5 session, the writer thread and the
  archive acknowledgements.
"""
