"""The node talks to a TLS-only broker when given its CA, and refuses an impostor's certificate."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from node.app import Node
from node.localbroker import LocalBroker, free_port
from tests.integration.test_node_inprocess import small_config
from tests.stationproc import wait_until


def _cert(subject: str, issuer_key, issuer_name, key, *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pki(d, name: str):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(f"{name} CA", ca_key, None, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("127.0.0.1", ca_key, ca.subject, key, ca=False)
    pem = serialization.Encoding.PEM
    (d / f"{name}-ca.pem").write_bytes(ca.public_bytes(pem))
    (d / f"{name}-cert.pem").write_bytes(cert.public_bytes(pem))
    (d / f"{name}-key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return d / f"{name}-ca.pem", d / f"{name}-cert.pem", d / f"{name}-key.pem"


def _run_until_connected(node: Node, seconds: float) -> tuple[bool, dict]:
    stop = threading.Event()
    th = threading.Thread(target=node.run, args=(stop,))
    th.start()
    try:
        return node.link.wait_connected(seconds), node.link.health()
    finally:
        stop.set()
        th.join(30)


def test_tls_broker(tmp_path):
    ca, cert, key = _pki(tmp_path, "ward")
    other_ca, _, _ = _pki(tmp_path, "impostor")
    port = free_port()
    conf = (f"listener {port} 127.0.0.1\nallow_anonymous true\n"
            f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
    with LocalBroker(port, extra_conf=conf):
        good = small_config(tmp_path / "a", port)
        good = good.replace(mqtt=dataclasses.replace(good.mqtt, tls_ca=str(ca)))
        assert _run_until_connected(Node(good), 15)[0]
        # the station's tools speak TLS with the same CA
        import io
        import time

        from station.watch import Watcher

        w = Watcher("127.0.0.1", port, "camnode", out=io.StringIO(), tls_ca=str(ca))
        w.start()
        deadline = time.monotonic() + 10
        while not w._client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert w._client.is_connected() and w.connect_error is None
        w.stop()
        bad = small_config(tmp_path / "b", port)
        bad = bad.replace(mqtt=dataclasses.replace(bad.mqtt, tls_ca=str(other_ca)))
        node = Node(bad)
        stop = threading.Event()
        th = threading.Thread(target=node.run, args=(stop,))
        th.start()
        try:  # until it has said why and recorded (a start under load can take seconds)
            wait_until(lambda: "certificate" in (node.link.health()["last_error"] or "")
                       and node.pipeline.counters.frames_encoded > 0, 20, 0.1)
            assert not node.link.wait_connected(0)  # certificate not from the ward's CA: no link
        finally:
            stop.set()
            th.join(30)
        assert "certificate" in (node.link.health()["last_error"] or "")  # and it says why
        assert node.pipeline.counters.frames_encoded > 0  # but it recorded all along
