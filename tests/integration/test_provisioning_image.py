"""The installer's documented path, desk to card: wheels for the board, a node with its model
and pins, an SD image written with mtools — and refused when the card would not boot into a
running node (issue 8, items 13 and 18).

The wheels are the real aarch64 wheels from the package index (``camnode-provision wheels``,
which the guide documents), so a dependency whose tag pip cannot match fails here first.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tomllib
from pathlib import Path

import pytest

from node.config import load_config
from node.localbroker import free_port
from provisioning.cli import main as provision
from provisioning.image import CMDLINE_HOOK, fat_offset
from station.live.credentials import load_secret

MT = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}


@pytest.fixture(scope="module")
def board_wheels(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("wheels")
    assert provision(["wheels", "--out", str(d)]) == 0
    return d


@pytest.fixture(scope="module")
def ward(tmp_path_factory, shared_dir) -> Path:
    out = tmp_path_factory.mktemp("img") / "ward-3"
    models = shared_dir / "models"
    station = out.parent / "station"
    load_secret(station)  # the post's live-secret; the installer's copy is given by path
    assert provision(["node", "--id", "pole-7", "--name", "Le Loi 12", "--broker", f"10.8.0.1:{free_port()}",
                      "--out", str(out), "--model", str(models / "ssd_mobilenet_v1_coco_quant.tflite"),
                      "--labels", str(models / "coco_labels.txt"), "--relay", "rtsp://10.8.0.1:8554",
                      "--live-secret", str(station / "live-secret")]) == 0
    assert provision(["node", "--id", "pole-8", "--out", str(out), "--no-detect", "--wiring", "pi5"]) == 0
    return out


def _sd_image(path: Path, *, partitioned: bool, mib: int = 160) -> None:
    """A real FAT file system made by mkfs.vfat (as big as a Pi OS boot partition needs for the
    wheels), bare or behind an MBR like an OS image, with a kernel command line."""
    fat = path.with_suffix(".fat")
    subprocess.run(["mkfs.vfat", "-C", str(fat), str(mib * 1024)], check=True, capture_output=True)
    cmdline = path.with_name("cmdline.txt")
    cmdline.write_text("console=tty1 root=PARTUUID=1234-02 rootwait\n")
    subprocess.run(["mcopy", "-i", str(fat), str(cmdline), "::/cmdline.txt"], check=True, env=MT)
    if not partitioned:
        fat.rename(path)
        return
    mbr = bytearray(512)
    mbr[446 + 4] = 0x0C  # FAT32 LBA
    struct.pack_into("<II", mbr, 446 + 8, 2048, fat.stat().st_size // 512)
    mbr[510:512] = b"\x55\xaa"
    with path.open("wb") as fh:
        fh.write(bytes(mbr) + bytes(2048 * 512 - 512))
        with fat.open("rb") as src:
            shutil.copyfileobj(src, fh)
    fat.unlink()


def _mtype(target: str, name: str) -> str:
    return subprocess.run(["mtype", "-i", target, name], capture_output=True, text=True, env=MT,
                          check=True).stdout


def _ls(target: str, folder: str) -> list[str]:
    r = subprocess.run(["mdir", "-b", "-i", target, folder], capture_output=True, text=True, env=MT)
    return [ln.rsplit("/", 1)[-1] for ln in r.stdout.split()]


def test_wheels_recipe_finds_every_board_wheel(board_wheels):
    names = [p.name for p in board_wheels.glob("*.whl")]
    assert any(n.startswith("camnode-") for n in names)
    # the wheel manylinux2014 never finds, and the other native ones
    assert any(n.startswith("ai_edge_litert-") and "manylinux_2_27_aarch64" in n for n in names), names
    for dist in ("numpy-", "av-", "cryptography-"):
        assert any(n.startswith(dist) and "aarch64" in n for n in names), (dist, names)


@pytest.mark.parametrize("partitioned", [True, False], ids=["os-image", "bare-fat"])
def test_documented_path_makes_a_complete_card(tmp_path, ward, board_wheels, partitioned, capsys):
    img = tmp_path / "sd.img"
    _sd_image(img, partitioned=partitioned)
    args = ["image", "--image", str(img), "--wheels", str(board_wheels), str(ward / "pole-7")]
    assert provision(args) == 0
    assert provision(args) == 0  # again: the same card, nothing doubled
    target = f"{img}@@{fat_offset(img)}"
    files = _ls(target, "::/camnode")
    for name in ("node.toml", "mqtt.password", "signing.key", "signing.pub", "ca.crt", "firstboot.sh",
                 "requirement.txt", "camnode.service", "99-camnode.conf", "live.password"):
        assert name in files, files
    # live view: the node's derived stream password, never the station's secret
    assert _mtype(target, "::/camnode/live.password") == (ward / "pole-7" / "live.password").read_text()
    secret = (ward.parent / "station" / "live-secret").read_text().strip()
    assert secret not in _mtype(target, "::/camnode/live.password")
    assert set(_ls(target, "::/camnode/models")) == {"ssd_mobilenet_v1_coco_quant.tflite", "coco_labels.txt"}
    assert sorted(_ls(target, "::/camnode/wheels")) == sorted(p.name for p in board_wheels.glob("*.whl"))
    # the model on the card is the model, byte for byte
    subprocess.run(["mcopy", "-i", target, "::/camnode/models/ssd_mobilenet_v1_coco_quant.tflite",
                    str(tmp_path / "m.tflite")], check=True, env=MT)
    assert (tmp_path / "m.tflite").read_bytes() == (ward / "pole-7" / "models" /
                                                    "ssd_mobilenet_v1_coco_quant.tflite").read_bytes()
    # the config on the card: TLS, the documented pins, detection on with the copied model
    cfg = tomllib.loads(_mtype(target, "::/camnode/node.toml"))
    assert cfg["gpio"] == {"factory": "auto", "ir_pin": 18, "ir_pwm": True, "ircut_mode": "pulse",
                           "ircut_pin": 23, "ircut_pin_b": 24, "light_mode": "digital", "light_pin": 5,
                           "led_pin": 25}
    assert cfg["detect"]["enabled"] is True and cfg["mqtt"]["tls_ca"] == "/etc/camnode/ca.crt"
    assert cfg["live"] == {"relay": "rtsp://10.8.0.1:8554", "username": "pole-7",
                           "password_file": "/etc/camnode/live.password"}
    assert _mtype(target, "::/camnode/requirement.txt").strip() == "camnode[detect]"
    loaded = load_config(ward / "pole-7" / "node.toml")  # as the node will load it, models beside it
    assert (ward / "pole-7" / loaded.detect.model).is_file()
    # first boot: the script is valid sh, installs from the wheels, installs the models, and
    # is hooked once into the kernel command line
    script = _mtype(target, "::/camnode/firstboot.sh")
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    assert '--find-links "$BOOT/wheels"' in script and "/etc/camnode/models/" in script
    secrets = script.index("for f in client.key live.password camera.password; do")
    assert 'install -m 0600 -o camnode -g camnode "$BOOT/$f" /etc/camnode/' in script[secrets:]
    assert secrets < script.index('rm -rf "$BOOT"')  # installed 0600, then gone from the boot partition
    line = _mtype(target, "::/cmdline.txt").strip()
    assert line.endswith(CMDLINE_HOOK.strip()) and line.count("firstboot.sh") == 1
    sed = script[script.index("sed -i"):script.index('"$CMDLINE"\nsync')].replace("\\\n", " ")
    (tmp_path / "cl.txt").write_text(line + "\n")
    subprocess.run(sed + f' "{tmp_path / "cl.txt"}"', shell=True, check=True)
    assert (tmp_path / "cl.txt").read_text() == "console=tty1 root=PARTUUID=1234-02 rootwait\n"
    if not partitioned:
        fsck = subprocess.run(["fsck.vfat", "-n", str(img)], capture_output=True, text=True)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert "first boot runs camnode/firstboot.sh" in capsys.readouterr().out


def test_a_card_that_would_not_boot_into_a_node_is_refused(tmp_path, ward, board_wheels, capsys):
    img = tmp_path / "sd.img"
    _sd_image(img, partitioned=True, mib=40)
    pristine = img.read_bytes()
    no_litert = tmp_path / "no-litert"
    no_litert.mkdir()
    for w in board_wheels.glob("*.whl"):
        if not w.name.startswith("ai_edge_litert-"):
            shutil.copy(w, no_litert / w.name)
    no_camnode = tmp_path / "no-camnode"
    shutil.copytree(board_wheels, no_camnode)
    for w in no_camnode.glob("camnode-*.whl"):
        w.unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    x86 = tmp_path / "x86"
    x86.mkdir()
    subprocess.run([shutil.which("python3") or "python3", "-m", "pip", "--version"], check=True,
                   capture_output=True)
    shutil.copy(next(board_wheels.glob("camnode-*.whl")), x86)
    no_model = tmp_path / "pole-7-no-model"
    shutil.copytree(ward / "pole-7", no_model)
    shutil.rmtree(no_model / "models")
    no_live_pw = tmp_path / "pole-7-no-live-password"
    shutil.copytree(ward / "pole-7", no_live_pw)
    (no_live_pw / "live.password").unlink()
    cases = [
        ([str(ward / "pole-7"), "--wheels", str(empty)], "no .whl files"),
        ([str(ward / "pole-7"), "--wheels", str(tmp_path / "nope")], "no such directory"),
        ([str(ward / "pole-7"), "--wheels", str(no_camnode)], "no camnode wheel"),
        ([str(ward / "pole-7"), "--wheels", str(no_litert)], "ai-edge-litert"),  # the detector's runtime
        ([str(ward / "pole-7"), "--wheels", str(x86)], "could not install camnode[detect]"),
        ([str(no_model), "--wheels", str(board_wheels)], "detect.model"),
        ([str(no_live_pw), "--wheels", str(board_wheels)], "live.password_file"),  # live view on, no password
        ([str(tmp_path / "nosuch-node"), "--wheels", str(board_wheels)], "no such node folder"),
        ([str(ward / "pole-7"), "--wheels", str(board_wheels)], "MB free"),  # a 40 MB card
    ]
    for args, words in cases:
        assert provision(["image", "--image", str(img), *args]) == 2, args
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1 and "Traceback" not in err, (args, err)
    assert img.read_bytes() == pristine  # nothing was written
    # item 13: a wrong image path or a file that is not an image: a clear message
    assert provision(["image", "--image", str(tmp_path / "nosuch.img"), "--wheels", str(board_wheels),
                      str(ward / "pole-8")]) == 2
    assert "nosuch.img: no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\0" * 4096)
    assert provision(["image", "--image", str(junk), "--wheels", str(board_wheels),
                      str(ward / "pole-8")]) == 2
    assert "not a disk image" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # the README's old command, without wheels
        provision(["image", "--image", str(img), str(ward / "pole-8")])
    assert e.value.code == 2
    # a motion-only node needs no detector runtime: those wheels suffice for it
    _sd_image(img, partitioned=True)
    assert provision(["image", "--image", str(img), "--wheels", str(no_litert), str(ward / "pole-8")]) == 0
    target = f"{img}@@{fat_offset(img)}"
    assert _mtype(target, "::/camnode/requirement.txt").strip() == "camnode"
    assert "models" not in _ls(target, "::/camnode")  # (an empty one would stop firstboot.sh)
    assert "live.password" not in _ls(target, "::/camnode")  # provisioned without --relay
    assert 'factory = "lgpio"' in _mtype(target, "::/camnode/node.toml")  # the Pi 5's wiring


def test_check_runs_the_nodes_own_checks_on_the_folder(ward, tmp_path, capsys):
    """On the desk the node's files are in the ward, not /etc/camnode: `check` looks for them
    there, and refuses what the node's start-up would refuse (here: a model it cannot find)."""
    assert provision(["check", str(ward / "pole-7")]) == 0
    broken = tmp_path / "pole-7"
    shutil.copytree(ward / "pole-7", broken)
    (broken / "node.toml").write_text((broken / "node.toml").read_text()
                                      .replace("ssd_mobilenet_v1_coco_quant.tflite", "nosuch.tflite"))
    capsys.readouterr()
    assert provision(["check", str(broken)]) == 2
    assert "detect.model" in capsys.readouterr().err
    (broken / "ca.crt").write_text("not a certificate\n")
    assert provision(["check", str(broken)]) == 2
    # live view on, its password missing: the node's own start-up check refuses it (image too)
    no_pw = tmp_path / "pole-7-no-live-password"
    shutil.copytree(ward / "pole-7", no_pw)
    (no_pw / "live.password").unlink()
    capsys.readouterr()
    assert provision(["check", str(no_pw)]) == 2
    err = capsys.readouterr().err
    assert "live.password_file" in err and "live.password" in err and err.count("\n") == 1


def test_no_card_for_a_retired_node(ward, board_wheels, tmp_path, capsys):
    assert provision(["node", "--id", "pole-9", "--out", str(ward), "--no-detect"]) == 0
    assert provision(["retire", "pole-9", "--out", str(ward)]) == 0
    img = tmp_path / "sd.img"
    _sd_image(img, partitioned=True, mib=40)
    capsys.readouterr()
    assert provision(["image", "--image", str(img), "--wheels", str(board_wheels), str(ward / "pole-9")]) == 3
    assert "pole-9 was retired" in capsys.readouterr().err
