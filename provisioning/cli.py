"""``camnode-provision``: what the installer runs before climbing the pole.

    camnode-provision node --id pole-7 --name "Le Loi 12" --broker 10.8.0.1 --out ward-3/
    camnode-provision station --out ward-3/
    camnode-provision check ward-3/pole-7
    camnode-provision image --image 2026-11-raspios-lite.img ward-3/pole-7

Exit codes: 0 ok, 2 bad input (named), 1 other failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from node.config import ConfigError
from provisioning.broker import ProvisionError
from provisioning.node import NodeSpec, check_node_dir, provision_node, provision_station


def _broker(value: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]`` or ``[V6]:PORT`` (a bare IPv6 address needs brackets)."""
    host, port = value, "1883"
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise argparse.ArgumentTypeError(f"bad broker address {value!r}: expected [IPv6]:PORT")
        port = rest[1:] or port
    elif value.count(":") == 1:
        host, port = value.split(":")
    elif value.count(":") > 1:
        raise argparse.ArgumentTypeError(f"bad broker address {value!r}: put an IPv6 address in [ ]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(
            f"bad broker address {value!r}: expected HOST, HOST:PORT or [IPv6]:PORT")
    return host, int(port)


def _cmd_node(a: argparse.Namespace) -> int:
    host, port = a.broker
    d = provision_node(NodeSpec(a.id, a.name or a.id, host, port, a.prefix, a.source, tls_ca=a.tls_ca),
                       Path(a.out))
    print(f"provisioned {a.id}: {d}/node.toml, {d}/mqtt.password; broker files in {Path(a.out) / 'broker'}")
    return 0


def _cmd_station(a: argparse.Namespace) -> int:
    pw = provision_station(Path(a.out), a.user)
    print(f"station user {a.user!r} added; password: {pw}")
    return 0


def _cmd_image(a: argparse.Namespace) -> int:
    from provisioning.image import write_node_files

    names, hooked = write_node_files(Path(a.image), Path(a.node_dir),
                                     wheels=Path(a.wheels) if a.wheels else None)
    print(f"{a.image}: wrote {len(names)} files into /camnode on the boot partition")
    print("first boot runs camnode/firstboot.sh (cmdline.txt)" if hooked else
          "no cmdline.txt on this image: run /boot/firmware/camnode/firstboot.sh once as root on the node")
    return 0


def _cmd_check(a: argparse.Namespace) -> int:
    print(check_node_dir(Path(a.dir)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="camnode-provision", description="Provision camnode nodes.")
    sub = p.add_subparsers(dest="command", required=True)
    n = sub.add_parser("node", help="credentials + config for one node, broker password/ACL files")
    n.add_argument("--id", required=True, help="node id (a-z, 0-9, - and _)")
    n.add_argument("--name", default="", help="human name of the pole")
    n.add_argument("--broker", type=_broker, required=True, help="HOST[:PORT] of the ward's broker")
    n.add_argument("--prefix", default="camnode")
    n.add_argument("--source", default="picamera2", help="camera.source for this node")
    n.add_argument("--tls-ca", default="", help="the broker's CA certificate (TLS); installed on the node")
    n.add_argument("--out", required=True, help="directory collecting the ward's files")
    n.set_defaults(func=_cmd_node)
    s = sub.add_parser("station", help="add the station's user to the broker password file")
    s.add_argument("--user", default="station")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_station)
    i = sub.add_parser("image", help="copy a node's files into the boot partition of an SD image")
    i.add_argument("--image", required=True, help="the flashed OS image (or the card's device)")
    i.add_argument("node_dir", help="the node's directory made by 'camnode-provision node'")
    i.add_argument("--wheels", default="",
                   help="directory of wheels for the board (camnode and its dependencies, e.g. "
                   "`pip download --platform manylinux2014_aarch64 --only-binary=:all: -d DIR "
                   "numpy av paho-mqtt gpiozero ai-edge-litert cryptography` plus `pip wheel . -w DIR`); "
                   "first boot installs them into /opt/camnode/.venv")
    i.set_defaults(func=_cmd_image)
    c = sub.add_parser("check", help="validate a provisioned node directory")
    c.add_argument("dir")
    c.set_defaults(func=_cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, ProvisionError) as exc:
        print(f"camnode-provision: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
