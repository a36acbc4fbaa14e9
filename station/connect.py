"""One way for every station tool to open its MQTT client (user, password, TLS)."""

from __future__ import annotations

import ssl

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def make_client(username: str = "", password: str = "", tls_ca: str = "") -> paho.Client:
    """An MQTT 5 client; ``tls_ca`` (the ward's CA certificate) turns TLS on. Callback errors
    are logged by paho instead of killing its network thread."""
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    c.suppress_exceptions = True
    if username:
        c.username_pw_set(username, password or None)
    if tls_ca:
        c.tls_set(ca_certs=tls_ca, cert_reqs=ssl.CERT_REQUIRED)
    return c
