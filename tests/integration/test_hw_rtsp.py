"""An IP camera's H.264 is recorded without re-encoding while lores frames reach analysis.

A loopback RTSP server (Debian's gst-rtsp-server, run by the system Python: see
``tests/hw_rtsp_server.py``) serves a clip made here, as a camera would (no B-frames, an IDR
every second). The node's PyAV source passes the packets through to the real segment writer;
the slices (VCL NAL units) in the recorded fMP4 must be the clip's, byte for byte, and the
lores images must show the clip's moving bar where it really is.

The same is proven for a file source with B-frames, and reconnect-with-backoff is exercised by
killing and restarting the server.
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from hw.camera.base import SourceError
from hw.camera.credentials import source_spec
from hw.camera.pyav import PyAVSource, _redact
from hw.encode.libav import has_sps
from hw.media import StreamInfo
from node.clock import FakeClock, SystemClock
from node.record.segment import segment_files
from node.record.writer import SegmentWriter

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "tests" / "hw_rtsp_server.py"
W, H, FPS, N = 320, 192, 25, 50
BAR = 16


def bar_x(i: int) -> int:
    return (i * 5) % (W - BAR)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s of 320x192 @ 25 fps, baseline-like (no B-frames), IDR every 25 frames."""
    path = tmp_path_factory.mktemp("clip") / "cam.mp4"
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=FPS)
        st.width, st.height, st.pix_fmt = W, H, "yuv420p"
        st.options = {"preset": "ultrafast", "tune": "zerolatency", "bf": "0",
                      "x264-params": "keyint=25:min-keyint=25:scenecut=0"}
        for i in range(N):
            y = np.full((H, W), 40, np.uint8)
            y[:, bar_x(i):bar_x(i) + BAR] = 220
            yuv = np.concatenate([y, np.full((H // 2, W), 128, np.uint8)])
            vf = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            vf.pts = i
            for p in st.encode(vf):
                out.mux(p)
        for p in st.encode(None):
            out.mux(p)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    def __init__(self, clip: Path, port: int = 0, *flags: str, password: str = "") -> None:
        self.proc = subprocess.Popen(["/usr/bin/python3", str(SERVER), str(clip), str(port), *flags],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        if password:  # (with --user: the camera's password, on stdin, never in its argv)
            self.proc.stdin.write(password + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        if not line.startswith("READY "):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.stop()
            pytest.fail(f"RTSP test server did not start: {line!r} {err}")
        self.url = line.split(" ", 1)[1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()


def nal_units(data: bytes, avcc: bool) -> list[bytes]:
    """Split an access unit into NAL units (payload only, no start code / length)."""
    out = []
    if avcc:
        i = 0
        while i + 4 <= len(data):
            n = int.from_bytes(data[i:i + 4], "big")
            out.append(data[i + 4:i + 4 + n])
            i += 4 + n
        return out
    parts = data.split(b"\x00\x00\x01")
    for part in parts[1:]:
        out.append(part[:-1] if part.endswith(b"\x00") else part)
    return [p for p in out if p]


def vcl(units: list[bytes]) -> list[bytes]:
    return [u for u in units if u[0] & 0x1F in (1, 5)]


def file_slices(path: Path, frames: int | None = None) -> list[bytes]:
    """Every slice NAL of the file's first ``frames`` packets (all when None), in order."""
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        avcc = bytes(st.codec_context.extradata or b"")[:1] == b"\x01"
        packets = [bytes(p) for p in c.demux(st) if p.size]
    return [s for p in packets[:frames] for s in vcl(nal_units(p, avcc))]


def record(frames, root: Path, fps: float):
    writer = SegmentWriter(root, 60.0, FakeClock())
    started = False
    got = []
    for f in frames:
        if not started:
            writer.start(StreamInfo("h264", f.width, f.height, fps))
            started = True
        writer.write(f.packet)
        got.append(f)
    writer.stop()
    assert writer.last_error is None and writer.dropped == 0
    return got


def test_rtsp_passthrough_is_byte_identical_and_feeds_lores(clip, tmp_path):
    server = RtspServer(clip)
    try:
        src = PyAVSource(server.url, 1280, 720, FPS, (80, 48), SystemClock(), max_frames=N,
                         max_retries=0)
        frames = record(src.frames(), tmp_path / "rec", FPS)
    finally:
        server.stop()
    d = src.describe()
    assert d["passthrough"] and d["codec"] == "h264" and (d["width"], d["height"]) == (W, H)
    assert len(frames) == N and all(f.main is None and f.packet is not None for f in frames)
    # What the node handed the recorder: the camera's slices, untouched.
    sent = [s for f in frames for s in vcl(nal_units(f.packet.data, avcc=False))]
    original = file_slices(clip)
    assert sent == original
    # What the recorder wrote: the same slices, byte for byte (only the framing differs).
    (seg,) = segment_files(tmp_path / "rec")
    assert file_slices(seg) == original
    # Analysis got real lores images: the bar is where the clip put it.
    assert d["lores_decoded"] == N
    for i, f in enumerate(frames):
        assert f.lores.shape == (48, 80) and f.meta["lores_fresh"]
        col = int(np.argmax(f.lores.mean(axis=0)))
        assert abs(col - (bar_x(i) + BAR // 2) / 4) <= 3, (i, col)
    assert [f.seq for f in frames if f.packet.keyframe] == [0, 25]
    pts = [f.packet.pts for f in frames]
    assert pts[0] == 0 and all(b - a == 3600 for a, b in itertools.pairwise(pts))


def test_rtsp_camera_with_parameter_sets_only_in_sdp(clip, tmp_path):
    server = RtspServer(clip, 0, "--sdp-only")
    try:
        src = PyAVSource(server.url, W, H, FPS, (80, 48), SystemClock(), max_frames=30,
                         max_retries=0)
        frames = record(src.frames(), tmp_path / "rec", FPS)
    finally:
        server.stop()
    keys = [f for f in frames if f.packet.keyframe]
    # The stream carried no SPS in-band; the node repeats the SDP's before each IDR...
    assert keys and all(has_sps(f.packet.data) for f in keys)
    assert not any(has_sps(f.packet.data) for f in frames if not f.packet.keyframe)
    # ...so the segment decodes on its own, and the slices are still the clip's.
    (seg,) = segment_files(tmp_path / "rec")
    assert file_slices(seg) == file_slices(clip, 30)
    with av.open(str(seg)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 30


def test_rtsp_analysis_rate_limits_lores(clip):
    server = RtspServer(clip)
    try:
        src = PyAVSource(server.url, W, H, FPS, (80, 48), SystemClock(), max_frames=N,
                         analysis_fps=5.0, max_retries=0)
        frames = list(src.frames())
    finally:
        server.stop()
    fresh = [f.seq for f in frames if f.meta["lores_fresh"]]
    assert 9 <= len(fresh) <= 11  # 2 s at 5 lores/s
    assert all(f.packet is not None for f in frames) and len(frames) == N


def test_rtsp_reconnects_with_backoff_and_reports(clip):
    import threading

    port = free_port()
    servers = [RtspServer(clip, port)]
    src = PyAVSource(servers[0].url, W, H, FPS, (80, 48), SystemClock(), backoff_s=(0.2, 1.0))
    dropped = threading.Event()
    states = []

    def camera_comes_back() -> None:
        # Once the source has noticed the drop and failed at least once to reconnect, the
        # camera comes back on the same address.
        dropped.wait(10)
        deadline = time.monotonic() + 10
        while src.describe()["failed_attempts"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        states.append(src.describe()["state"])
        servers.append(RtspServer(clip, port))

    helper = threading.Thread(target=camera_comes_back)
    helper.start()
    frames = []
    try:
        for f in src.frames():
            frames.append(f)
            if len(frames) == 10:
                servers[0].stop()  # the camera drops off the network mid-stream
                dropped.set()
            if any(x.meta.get("discontinuity") for x in frames[-12:]) and len(frames) >= 30:
                break
    finally:
        src.close()
        dropped.set()
        helper.join(20)
        for s in servers:
            s.stop()
    d = src.describe()
    assert states == ["reconnecting"]
    firsts = [f for f in frames if f.meta.get("discontinuity")]
    assert len(firsts) == 1 and firsts[0].packet.keyframe
    assert d["reconnects"] == 1 and d["opens"] == 2 and d["failed_attempts"] == 0
    assert d["state"] == "streaming" and d["last_error"]
    pts = [f.packet.pts for f in frames]
    assert all(b > a for a, b in itertools.pairwise(pts))


def test_unreachable_camera_backs_off_then_gives_up():
    clock = FakeClock()
    url = f"rtsp://admin:secret@127.0.0.1:{free_port()}/cam"
    src = PyAVSource(url, W, H, FPS, (80, 48), clock, max_retries=3, backoff_s=(0.5, 1.5))
    with pytest.raises(SourceError, match="giving up after 4 failed attempts") as err:
        list(src.frames())
    assert "secret" not in str(err.value)
    d = src.describe()
    assert d["state"] == "failed" and d["failed_attempts"] == 4 and d["opens"] == 0
    assert clock.monotonic() == pytest.approx(0.5 + 1.0 + 1.5)  # doubling, capped
    assert "secret" not in d["source"] and d["last_error"]


def test_file_with_bframes_passthrough_is_byte_identical(shared_dir, tmp_path):
    clip = shared_dir / "media/videos/worker-zone-detection.mp4"  # High profile, B-frames
    src = PyAVSource(str(clip), 480, 270, 16.67, (120, 68), FakeClock(), realtime=False,
                     loop=False, passthrough=True)
    frames = record(src.frames(), tmp_path / "rec", 50 / 3)
    assert len(frames) == 71
    assert all(f.packet.data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")) for f in frames)
    dts = [f.packet.dts for f in frames]
    assert all(b > a for a, b in itertools.pairwise(dts))
    assert all(f.packet.dts <= f.packet.pts for f in frames)
    (seg,) = segment_files(tmp_path / "rec")
    assert file_slices(seg) == file_slices(clip)
    assert src.describe()["lores_decoded"] >= 69  # decoder delay of the B-frame reorder


def test_decode_mode_and_source_errors(tmp_path):
    with pytest.raises(SourceError, match="file not found"):
        PyAVSource(str(tmp_path / "none.mp4"), W, H, FPS, (80, 48), FakeClock())
    src = PyAVSource("lavfi:testsrc2=size=320x240:rate=10", 160, 120, 10, (80, 60), FakeClock(),
                     realtime=False, max_frames=5)
    frames = list(src.frames())
    assert len(frames) == 5 and frames[0].main.shape == (180, 160) and frames[0].packet is None
    assert not src.describe()["passthrough"]
    with pytest.raises(SourceError, match=r"passthrough needs H\.264"):
        list(PyAVSource("lavfi:testsrc2=size=64x64:rate=5", 64, 64, 5, (32, 32), FakeClock(),
                        realtime=False, max_frames=2, passthrough=True).frames())


def test_a_camera_with_a_login_opens_with_the_password_from_its_file(clip, tmp_path):
    """An IP camera whose password was changed from the factory's (RTSP authentication): the
    node's URL names only the user; the password comes from camera.password_file when the stream
    opens. Without it the camera refuses; no error message, description or log holds it."""
    secret = "p@ss:w/rd #ü"  # every character a URL would mangle if it were not encoded
    server = RtspServer(clip, 0, "--user", "admin", password=secret)
    try:
        url = server.url.replace("rtsp://", "rtsp://admin@")
        with pytest.raises(SourceError, match="401 Unauthorized") as refused:
            list(PyAVSource(url, W, H, FPS, (80, 48), SystemClock(), max_frames=5, max_retries=0).frames())
        assert secret not in str(refused.value)
        wrong = tmp_path / "wrong"
        wrong.write_text("not-it\n")
        with pytest.raises(SourceError, match="401 Unauthorized") as refused:
            list(PyAVSource(source_spec(url, str(wrong)), W, H, FPS, (80, 48), SystemClock(), max_frames=5,
                            max_retries=0).frames())
        assert "not-it" not in str(refused.value) and "admin:***@" in str(refused.value), refused.value
        pw = tmp_path / "camera.password"
        pw.write_text(secret + "\n")
        src = PyAVSource(source_spec(url, str(pw)), W, H, FPS, (80, 48), SystemClock(), max_frames=10,
                         max_retries=0)
        frames = list(src.frames())
    finally:
        server.stop()
    assert len(frames) == 10 and frames[0].packet is not None
    d = src.describe()
    assert secret not in json.dumps(d) and "p%40ss" not in json.dumps(d)
    assert d["source"].startswith("rtsp://admin:***@"), d["source"]
    with pytest.raises(SourceError, match=r"camera.password_file .*missing: No such file"):
        source_spec(url, str(tmp_path / "missing"))
    with pytest.raises(SourceError, match="names no user"):
        source_spec(server.url, str(pw))


def test_redact():
    assert _redact("rtsp://u:p@h:554/x") == "rtsp://u:***@h:554/x"
    assert _redact("rtsp://h/x") == "rtsp://h/x"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
