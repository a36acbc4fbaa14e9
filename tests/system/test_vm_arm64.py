"""camnode on arm64, the Pi's CPU: the installer's card for an aarch64 node with the person detector,
booted in qemu-system-aarch64 (software emulation of a Pi 4's Cortex-A72, Debian's arm64 kernel).

What it proves runs on aarch64: first boot installing ``camnode[detect]`` from the aarch64 wheels
``camnode-provision wheels --arch aarch64`` bundles (ai-edge-litert, av, numpy), the node on the
synthetic camera heartbeating at a station login with its detector loaded and inferring, the model
finding the persons of a photo, PyAV's libx264 encoding, and lgpio (the ``rpi`` extra's GPIO wheel).
``picamera2``, the ``rpi`` extra's other half, has no aarch64 wheels for two of its dependencies
(PiDNG, python-prctl: source only); on a Pi it comes from Raspberry Pi OS (python3-picamera2), which
Debian does not carry (docs/installer.md).

Selected by ``CAMNODE_SYSTEM=arm64`` (``make test-system-arm64``) or ``soak``; ~20 min the first time
(the image's debootstrap second stage runs in the VM), then ~6; the figures are in the run's summary.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provisioning.wheels import platform_args
from tests.system.nodevm import NODE_ID, boot, install
from tests.system.vm import VM, cmdline_of
from tests.system.vmimage import AARCH64, BOOT_START, SECTOR

MODELS = Path(__file__).resolve().parents[2].parent / "shared" / "models"
PHOTO = Path(__file__).resolve().parents[2].parent / "shared" / "media" / "images" / "three_persons.jpg"
MODEL = "ssd_mobilenet_v1_coco_quant.tflite"
VENV = "/opt/camnode/.venv/bin"
#: test data put on the card's boot partition beside the installer's files (first boot leaves it)
TESTDATA = "/boot/firmware/testdata"


def _mcopy(card: Path, src: Path, dst: str) -> None:
    target = f"{card}@@{BOOT_START * SECTOR}"
    env = {"MTOOLS_SKIP_CHECK": "1", "PATH": os.environ["PATH"]}
    subprocess.run(["mmd", "-i", target, "::/testdata"], capture_output=True, env=env)
    subprocess.run(["mcopy", "-o", "-i", target, str(src), dst], check=True, capture_output=True, env=env)


def _lgpio_wheel(dest: Path) -> Path:
    """The ``rpi`` extra's lgpio, as its aarch64 wheel for the board's CPython."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dest),
                    *platform_args(arch="aarch64"), "lgpio>=0.2"], check=True, capture_output=True)
    return next(dest.glob("lgpio-*.whl"))


def _testdata(card: Path, wheels: Path) -> None:
    """Beside the installer's files on the arm64 card: the photo and lgpio's wheel."""
    assert "console=ttyAMA0" in cmdline_of(card)
    _mcopy(card, PHOTO, "::/testdata/three_persons.jpg")
    lgpio = _lgpio_wheel(wheels / "rpi")
    _mcopy(card, lgpio, f"::/testdata/{lgpio.name}")


@pytest.fixture(scope="module")
def node(tmp_path_factory, figure):
    if not (MODELS / MODEL).is_file() or not PHOTO.is_file():
        pytest.fail(f"the person model and photo are read from {MODELS.parent} (models/{MODEL}, "
                    "media/images/three_persons.jpg)")
    ward = install(Path(tmp_path_factory.mktemp("arm64")), arch=AARCH64, on_card=_testdata,
                   detection=("--model", str(MODELS / MODEL), "--labels", str(MODELS / "coco_labels.txt")),
                   first_boot_timeout=5400)  # pip installs camnode[detect] under emulation
    try:
        n = boot(ward, Path(tmp_path_factory.mktemp("arm64-node")), timeout=1800)
    except BaseException:
        ward.broker.stop()
        raise
    figure(f"arm64: card image {ward.image_s:.0f} s (cached after the first build); first boot "
           f"(install + reboot) {ward.first_boot_s:.0f} s; second boot to the first heartbeat "
           f"{n.boot_s:.0f} s")
    yield n.vm, n.station
    n.close()
    ward.broker.stop()


def _sh(vm: VM, command: str, timeout: float = 600) -> str:
    code, out = vm.sh(command, timeout)
    assert code == 0, f"{command!r} exited {code}: {out}"
    return out


def _py(vm: VM, script: str, timeout: float = 900) -> str:
    """Run a Python script with the node's venv in the guest (as root)."""
    # the here-document's end on a line of its own: the control shell wraps the command in "( ... )"
    return _sh(vm, f"{VENV}/python - <<'EOF'\n{script}\nEOF\n", timeout)


def test_first_boot_installs_camnode_with_detect_from_the_aarch64_wheels(node, figure):
    vm, station = node
    _, hb = station.wait("heartbeat", timeout=120)
    assert hb["node_id"] == NODE_ID
    assert _sh(vm, "uname -m") == "aarch64"
    assert _sh(vm, "systemctl is-active camnode") == "active"
    out = _py(vm, "import platform, av, numpy, ai_edge_litert, ai_edge_litert.interpreter\n"
                  "print(platform.machine(), av.__version__, numpy.__version__, ai_edge_litert.__file__)")
    machine, av_v, np_v, litert = out.splitlines()[-1].split(" ")
    assert machine == "aarch64" and litert.startswith("/opt/camnode/.venv/"), out
    # the wheels first boot installed are the aarch64 ones (the board has no compiler)
    tags = _sh(vm, "grep -h '^Tag:' /opt/camnode/.venv/lib/python3.11/site-packages/"
                   "{av,numpy,ai_edge_litert}-*.dist-info/WHEEL")
    assert re.search(r"cp311-cp311-manylinux_2_\d+_aarch64", tags), tags
    figure(f"arm64 venv: av {av_v}, numpy {np_v}; wheel tags: {sorted(set(tags.split()) - {'Tag:'})}")


def test_the_node_runs_on_the_synthetic_source_and_its_detector_infers(node, figure):
    vm, station = node
    deadline = time.monotonic() + 1800
    after = 0.0
    while True:  # the walker's motion asks for inference; the median of 3+ calls (the first warms up)
        t, hb = station.wait("heartbeat", after=after, timeout=max(1.0, deadline - time.monotonic()))
        vision = (hb.get("vision") or {}).get("detect") or {}
        if (hb.get("fps_out") or 0) > 0 and (vision.get("inference_calls") or 0) >= 3:
            break
        after = t
    assert vision["enabled"] is True and vision["reason"] is None, vision
    assert vision["runtime"] == "ai-edge-litert" and vision["model"] == MODEL, vision
    assert vision["inference_ms"] > 0
    pid = _sh(vm, "systemctl show camnode -p MainPID --value")
    assert "/opt/camnode/.venv/bin/camnode" in _sh(vm, f"tr '\\0' ' ' < /proc/{pid}/cmdline")
    # the node's CPU in the guest over a minute (one emulated Cortex-A72)
    ticks = f"awk '{{print $14 + $15}}' /proc/{pid}/stat"
    c0, t0 = int(_sh(vm, ticks)), time.monotonic()
    time.sleep(60)
    c1, t1 = int(_sh(vm, ticks)), time.monotonic()
    hz = int(_sh(vm, "getconf CLK_TCK"))
    cpu = (c1 - c0) / hz / (t1 - t0) * 100
    figure(f"arm64 node: fps_in {hb['fps_in']}, fps_out {hb['fps_out']}, encoder {hb['encoder']}, "
           f"inference median {vision['inference_ms']} ms over {vision['inference_calls']} calls, "
           f"node CPU {cpu:.0f} % of the emulated core, cpu_load {hb.get('cpu_load')}")
    assert 0 < cpu <= 110


def test_the_installed_detector_finds_the_persons_of_a_photo_on_aarch64(node, figure):
    vm, _ = node
    out = _py(vm, f"""
import av
from hw.infer import Detector, read_labels
det = Detector("/etc/camnode/models/{MODEL}", threads=1)
w, h = det.input_size
with av.open("{TESTDATA}/three_persons.jpg") as c:
    frame = next(c.decode(video=0))
rgb = frame.to_ndarray(format="rgb24", width=w, height=h)
labels = read_labels("/etc/camnode/models/coco_labels.txt")
found = det.detect(rgb, min_score=0.5)
print(det.runtime, round(det.last_ms), " ".join(labels[d.class_id] for d in found))
""")
    runtime, ms, *labels = out.splitlines()[-1].split(" ")
    figure(f"arm64 detector on the photo: {labels} in {ms} ms ({runtime})")
    assert runtime == "ai-edge-litert"
    assert labels.count("person") >= 2, out


def test_pyav_encodes_h264_on_aarch64(node):
    vm, _ = node
    out = _py(vm, """
import io, av, numpy as np
buf = io.BytesIO()
with av.open(buf, "w", format="mp4") as out:
    s = out.add_stream("libx264", rate=5)
    s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
    for i in range(10):
        img = np.full((240, 320, 3), i * 20, np.uint8)
        for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
buf.seek(0)
with av.open(buf) as c:
    frames = sum(1 for _ in c.decode(video=0))
    codec = c.streams.video[0].codec_context.name
print(codec, frames, buf.getbuffer().nbytes)
""")
    codec, frames, size = out.splitlines()[-1].split(" ")
    assert (codec, int(frames)) == ("h264", 10) and int(size) > 0, out


def test_the_rpi_extras_gpio_wheel_installs_and_imports_on_aarch64(node):
    vm, _ = node
    _sh(vm, f"{VENV}/pip install -q --no-index --find-links {TESTDATA} lgpio")
    out = _py(vm, "import lgpio, platform; print(platform.machine(), lgpio.LGPIO_PY_VERSION)")
    assert out.splitlines()[-1].startswith("aarch64 "), out
