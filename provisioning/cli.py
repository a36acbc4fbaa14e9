"""``camnode-provision``: what the installer runs before climbing the pole.

    camnode-provision node --id pole-7 --name "Le Loi 12" --broker 10.8.0.1 --out ward-3/ \
        --relay rtsp://10.8.0.1:8554 --live-secret station-live-secret   # live view (optional)
    camnode-provision station --user station-a --out ward-3/
    camnode-provision technician --user tech-an --out ward-3/
    camnode-provision install-broker ward-3/            # as root on the broker host
    camnode-provision flash raspios-lite.img.xz /dev/sdX   # the OS onto the card, read back
    camnode-provision image --image raspios-lite.img --wheels wheels/ ward-3/pole-7
    camnode-provision retire pole-7 --out ward-3/       # a pole taken down or stolen
    camnode-provision rotate tech-an --out ward-3/      # a new password, said out loud

The first command makes the ward (its CA, the broker's TLS certificate, ``ward.json``); later
ones add to it. Exit codes: 0 done (or already so: nothing changed), 1 a tool failed,
2 bad input (named), 3 refused because it collides with the ward as it is (nothing changed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from node.config import ConfigError
from provisioning.errors import ProvisionError
from provisioning.roles import NODE, STATION, TECHNICIAN, check_name, check_prefix


def _broker(value: str) -> tuple[str, int | None]:
    """``HOST``, ``HOST:PORT``, ``[V6]`` or ``[V6]:PORT`` (a bare IPv6 address needs brackets)."""
    host, port = value, ""
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise argparse.ArgumentTypeError(f"bad broker address {value!r}: expected [IPv6]:PORT")
        port = rest[1:]
    elif value.count(":") == 1:
        host, port = value.split(":")
    elif value.count(":") > 1:
        raise argparse.ArgumentTypeError(f"bad broker address {value!r}: put an IPv6 address in [ ]")
    if not host or (port and (not port.isdigit() or not 0 < int(port) < 65536)):
        raise argparse.ArgumentTypeError(
            f"bad broker address {value!r}: expected HOST, HOST:PORT or [IPv6]:PORT")
    return host, int(port) if port else None


def _open(a: argparse.Namespace):
    from provisioning.ward import BrokerAddress, open_ward

    broker = None
    if getattr(a, "broker", None):
        host, port = a.broker
        tls = not getattr(a, "no_tls", False)
        broker = BrokerAddress(host, port or (8883 if tls else 1883))
    return open_ward(Path(a.out), broker=broker, prefix=getattr(a, "prefix", None) or None,
                     tls=not getattr(a, "no_tls", False), client_certs=getattr(a, "client_certs", False))


def _cmd_node(a: argparse.Namespace) -> int:
    from provisioning.live import check_relay, station_secret
    from provisioning.node import NodeSpec, provision_node

    check_name(NODE, a.id)  # before a new ward is made for a request that cannot succeed
    if a.prefix:
        check_prefix(a.prefix)
    if not a.model and not a.no_detect:
        raise ProvisionError("give --model FILE --labels FILE (the person detector copied onto the card), "
                             "or --no-detect for a node that detects motion only")
    relay = check_relay(a.relay) if a.relay else ""
    if relay and not a.live_secret:
        raise ProvisionError("--relay needs --live-secret FILE (the station's <station dir>/live-secret, "
                             "copied here; the node's stream password is derived from it)")
    if a.live_secret and not relay:
        raise ProvisionError("--live-secret goes with --relay rtsp://HOST:PORT (the station relay's "
                             "address)")
    secret = station_secret(Path(a.live_secret)) if a.live_secret else None
    camera_password = _camera_password(a.source, a.camera_password_file)
    with _open(a) as ward:
        spec = NodeSpec(a.id, a.name or a.id, prefix=a.prefix or "", source=a.source, wiring=a.wiring,
                        model=Path(a.model) if a.model else None,
                        labels=Path(a.labels) if a.labels else None, relay=relay)
        d, changed = provision_node(ward, spec, update=a.update, live_secret=secret, live_off=a.no_live,
                                    camera_password=camera_password)
        live = ward.relay if ward.live(a.id) else ""
    if changed:
        print(f"provisioned {a.id}: {d}/ (node.toml, mqtt.password, signing key"
              f"{', ca.crt' if ward.tls else ''}{', live.password' if live else ''}); broker {ward.broker}"
              f"{f'; live view via {live}' if live else ''}; "
              f"install the broker's files with: camnode-provision install-broker {a.out}"
              + (f"; give the station's relay the new {a.out}/ward.json (its --ward file; then "
                 "systemctl reload camnode-relay)" if live else ""))
    else:
        print(f"{a.id}: already provisioned as asked; nothing changed")
    return 0


def _camera_password(source: str, password_file: str) -> str | None:
    """The IP camera's password from its file (never from --source, where ps would show it and
    node.toml would keep it); None when the camera needs none."""
    from urllib.parse import urlsplit

    from provisioning.node import takes_password

    url = urlsplit(source) if "://" in source else None
    if url is not None and url.password is not None:
        raise ProvisionError("--source holds a password (ps shows it, node.toml would keep it): give "
                             "rtsp://USER@HOST/... and --camera-password-file FILE")
    if not password_file:
        return None
    if not takes_password(source):
        raise ProvisionError("--camera-password-file is for an IP camera: give --source rtsp://USER@HOST/...")
    try:
        lines = Path(password_file).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ProvisionError(f"--camera-password-file {password_file}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
    if not lines or not lines[0].strip():
        raise ProvisionError(f"--camera-password-file {password_file}: the file is empty")
    return lines[0].strip()


def _cmd_user(a: argparse.Namespace, role: str) -> int:
    from provisioning.node import provision_user

    check_name(role, a.user)
    with _open(a) as ward:
        d, created = provision_user(ward, a.user, role)
    if not created:
        print(f"{a.user}: already a {role} of this ward; nothing changed "
              f"(a new password: camnode-provision rotate {a.user} --out {a.out})")
        return 0
    tls = f" --tls-ca {d / 'ca.crt'}" if ward.tls else ""
    if ward.client_certs:
        tls += f" --tls-cert {d / 'client.crt'} --tls-key {d / 'client.key'}"
    print(f"{role} user {a.user!r} added; its password is in {d / 'password'} (mode 0600)\n"
          f"  camnode-station fleet --host {ward.broker.host} --port {ward.broker.port} "
          f"--prefix {ward.prefix} --username {a.user} --password-file {d / 'password'}{tls}")
    return 0


def _cmd_retire(a: argparse.Namespace) -> int:
    with _open(a) as ward:
        ward.retire(a.name)
    print(f"{a.name}: retired (removed from the password file and the ACL; the name stays taken). "
          f"Install the broker's files again and reload it: camnode-provision install-broker {a.out}")
    return 0


def _cmd_rotate(a: argparse.Namespace) -> int:
    from provisioning.node import rotate

    with _open(a) as ward:
        target = rotate(ward, a.name)
    print(f"{a.name}: new password in {target}; install the broker's files again "
          f"(camnode-provision install-broker {a.out}) and give the user the new file")
    return 0


def _cmd_install_broker(a: argparse.Namespace) -> int:
    from provisioning.broker import BrokerLayout, install

    with _open(argparse.Namespace(out=a.ward)) as ward:
        lay = BrokerLayout(dir=Path(a.dest), port=ward.broker.port, tls=ward.tls, bind=a.bind,
                           client_certs=ward.client_certs)
        files = install(ward.root / "broker", lay, Path(a.conf), group=a.group)
    print(f"installed {len(files)} files ({', '.join(str(f) for f in files)}); "
          "now: systemctl reload mosquitto")
    return 0


def _cmd_image(a: argparse.Namespace) -> int:
    from provisioning.image import write_node_files

    names, hooked = write_node_files(Path(a.image), Path(a.node_dir), wheels=Path(a.wheels), python=a.python,
                                     arch=a.arch)
    print(f"{a.image}: wrote {len(names)} files into /camnode on the boot partition")
    print("first boot runs camnode/firstboot.sh (cmdline.txt)" if hooked else
          "no cmdline.txt on this image: run /boot/firmware/camnode/firstboot.sh once as root on the node")
    return 0


def _cmd_flash(a: argparse.Namespace) -> int:
    from provisioning.flash import flash

    done = flash(Path(a.os_image), Path(a.device), progress=not a.quiet)
    print(f"{a.device}: wrote and verified {done.size / 1e6:.0f} MB of {a.os_image} "
          f"(sha256 {done.sha256[:16]}…)")
    return 0


def _cmd_wheels(a: argparse.Namespace) -> int:
    from provisioning.wheels import build

    found = build(Path(a.out), python=a.python, arch=a.arch)
    print(f"{a.out}: {len(found)} wheels for {a.arch} CPython {a.python}, checked to install camnode[detect]")
    return 0


def _cmd_check(a: argparse.Namespace) -> int:
    from provisioning.node import check_node_dir

    print(check_node_dir(Path(a.dir)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from provisioning.wheels import ARCHES, PYTHON
    from provisioning.wiring import WIRINGS

    p = argparse.ArgumentParser(prog="camnode-provision", description="Provision camnode nodes.",
                                epilog="Exit codes: 0 done or nothing to change, 1 a tool failed, "
                                "2 bad input, 3 collides with the ward as it is (nothing changed).")
    sub = p.add_subparsers(dest="command", required=True)

    def ward_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--out", required=True, help="the ward's folder (made by the first command)")
        sp.add_argument("--broker", type=_broker, default=None,
                        help="HOST[:PORT] of the ward's broker (the first time; default port 8883, "
                        "1883 with --no-tls)")
        sp.add_argument("--no-tls", action="store_true",
                        help="a new ward without TLS (passwords in clear: a lab only)")
        sp.add_argument("--client-certs", action="store_true",
                        help="a new ward whose broker also requires a client certificate (one per "
                        "node and user, signed by the ward's CA) besides the password")

    n = sub.add_parser("node", help="a node's config, password, keys; registered with the broker")
    n.add_argument("--id", required=True, help="node id (a-z, 0-9, - and _; not station-…/tech-…)")
    n.add_argument("--name", default="", help="human name of the pole")
    n.add_argument("--prefix", default="", help="topic prefix (default: the ward's, 'camnode')")
    n.add_argument("--source", default="picamera2", help="camera.source for this node (an IP camera: "
                   "rtsp://USER@HOST/..., its password with --camera-password-file)")
    n.add_argument("--camera-password-file", default="", metavar="FILE",
                   help="the IP camera's password (first line): into the node's camera.password (0600), "
                   "never into node.toml or a command line")
    n.add_argument("--wiring", default="pi4", choices=sorted(WIRINGS),
                   help="GPIO pins of the documented wiring (docs/hardware.md): pi4 (default), pi5, "
                   "or none (no IR, IR-cut, light sensor or LED: Jetson, PC)")
    n.add_argument("--model", default="", help="person detector .tflite, copied onto the card")
    n.add_argument("--labels", default="", help="its labels file")
    n.add_argument("--no-detect", action="store_true", help="no model: motion detection only")
    n.add_argument("--update", action="store_true", help="rewrite an existing node's node.toml")
    n.add_argument("--relay", default="", metavar="rtsp://HOST:PORT",
                   help="live view: the station relay's address (the ward remembers it; without it "
                   "a new node has live view off)")
    n.add_argument("--live-secret", default="", metavar="FILE",
                   help="with --relay: the station's live-secret file (<station dir>/live-secret, "
                   "0600); only the node's derived password is written, never the secret")
    n.add_argument("--no-live", action="store_true",
                   help="with --update: turn the node's live view off (its [live] and live.password go)")
    ward_args(n)
    n.set_defaults(func=_cmd_node)
    for role, name, default in ((STATION, "station", "station"), (TECHNICIAN, "technician", None)):
        s = sub.add_parser(name, help=f"a {role} login (password file, CA)")
        s.add_argument("--user", required=default is None, default=default,
                       help="station or station-<name>" if role == STATION else "tech-<name>")
        ward_args(s)
        s.set_defaults(func=lambda a, role=role: _cmd_user(a, role))
    for name, func, helptext in (("retire", _cmd_retire, "remove a user from the broker for good"),
                                 ("rotate", _cmd_rotate, "give a user a new password")):
        r = sub.add_parser(name, help=helptext)
        r.add_argument("name")
        r.add_argument("--out", required=True, help="the ward's folder")
        r.set_defaults(func=func)
    ib = sub.add_parser("install-broker", help="as root on the broker host: files + mosquitto drop-in")
    ib.add_argument("ward", help="the ward's folder")
    ib.add_argument("--dest", default="/etc/mosquitto/camnode", help="where the broker's files go")
    ib.add_argument("--conf", default="/etc/mosquitto/conf.d/camnode.conf", help="the drop-in to write")
    ib.add_argument("--bind", default="", help="address to listen on (default: all)")
    ib.add_argument("--group", default="mosquitto", help="the broker's service group")
    ib.set_defaults(func=_cmd_install_broker)
    f = sub.add_parser("flash", help="write an OS image (.img, .img.xz) to a card or image file, "
                       "then read it back and compare")
    f.add_argument("os_image", metavar="IMAGE", help="the board's OS image (.img or .img.xz)")
    f.add_argument("device", metavar="DEVICE",
                   help="the card's block device (lsblk lists them) or an existing image file; "
                   "refused when mounted, the system disk or smaller than the image")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.set_defaults(func=_cmd_flash)
    i = sub.add_parser("image", help="copy a node's files into the boot partition of an SD image")
    i.add_argument("--image", required=True, help="the flashed OS image (or the card's device)")
    i.add_argument("node_dir", help="the node's directory made by 'camnode-provision node'")
    i.add_argument("--wheels", required=True,
                   help="the board's wheels, made by `camnode-provision wheels` (checked before writing)")
    i.add_argument("--python", default=PYTHON, help=f"CPython of the board's OS (default {PYTHON})")
    i.add_argument("--arch", default="aarch64", choices=ARCHES, help="the board's CPU (default aarch64)")
    i.set_defaults(func=_cmd_image)
    wh = sub.add_parser("wheels", help="camnode's and its dependencies' wheels for the board (aarch64)")
    wh.add_argument("--out", required=True, help="folder for the wheels")
    wh.add_argument("--python", default=PYTHON, help=f"CPython of the board's OS (default {PYTHON})")
    wh.add_argument("--arch", default="aarch64", choices=ARCHES, help="the board's CPU (default aarch64)")
    wh.set_defaults(func=_cmd_wheels)
    c = sub.add_parser("check", help="validate a provisioned node directory")
    c.add_argument("dir")
    c.set_defaults(func=_cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ProvisionError as exc:
        print(f"camnode-provision: {exc}", file=sys.stderr)
        return exc.exit_code
    except ConfigError as exc:
        print(f"camnode-provision: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = getattr(exc, "filename", "") or ""
        print(f"camnode-provision: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
