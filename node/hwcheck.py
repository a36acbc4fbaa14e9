"""``make hwcheck``: a self-test an installer runs on a real board before closing the pole box.

Checks, in order, each reported as PASS, WARN or FAIL with the facts behind it:

1. **platform** — board model, SoC, memory, the recommended pin factory and gpiochip;
2. **temperatures** — every thermal zone reads, none above 80 °C; Pi throttling flags;
3. **storage** — SD card identity and wear where the kernel tells it;
4. **camera** — the configured source opens and delivers frames (measured fps);
5. **encoder** — the H.264 encoder chosen by probing, with every rejected candidate's reason;
6. **gpio** — IR on/off (read back), the IR-cut filter to night and back to day, the status LED
   through its codes, the light sensor read three times; then the safe state.

Exit code 0 when nothing FAILed. ``--json`` prints the report as JSON; ``--safe-state`` only
drives IR off / filter to day (a systemd ``ExecStopPost=`` hook for a node that died).

Usage: ``python -m node.hwcheck [--config FILE] [--frames N] [--json] [--safe-state]``.
Cost: a few seconds (the camera's first frames dominate). Thread: the caller's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hw.camera import open_source
from hw.camera.credentials import source_spec
from hw.encode.select import open_encoder
from hw.gpio import GpioSpec, LedCode, apply_safe_state, build_devices
from hw.media import StreamInfo
from hw.platform import VC4_KINDS, PlatformInfo, probe
from hw.redact import redact_url
from node.clock import Clock, SystemClock
from node.config import Config, ConfigError, load_config

HOT_C = 80.0


@dataclass
class Check:
    name: str
    status: str  # PASS, WARN, FAIL
    summary: str
    facts: dict[str, Any] = field(default_factory=dict)


def gpio_spec(cfg: Config) -> GpioSpec:
    """The ``[gpio]`` section as the hw layer's spec."""
    return GpioSpec.from_mapping(dataclasses.asdict(cfg.gpio))


def check_platform(info: PlatformInfo) -> Check:
    facts = {k: v for k, v in info.describe().items() if k not in ("temperatures", "throttled")}
    summary = f"{info.model} ({info.kind}, {info.soc or 'unknown SoC'})"
    if info.jetson_release:
        summary += f", L4T {info.jetson_release}"
    return Check("platform", "PASS" if info.kind != "generic" else "WARN",
                 summary + ("" if info.kind != "generic" else ": not a known camera board"), facts)


def check_temperatures(info: PlatformInfo) -> Check:
    temps = info.temperatures()
    flags = info.throttled()
    facts: dict[str, Any] = {"temperatures_c": temps, "throttled": flags}
    if not temps:
        return Check("temperatures", "WARN", "no thermal zone readable", facts)
    hottest = max(temps.values())
    now = [k for k in ("under_voltage", "throttled", "freq_capped") if flags and flags.get(k)]
    past = [k for k in ("under_voltage_occurred", "throttled_occurred") if flags and flags.get(k)]
    summary = ", ".join(f"{k} {v:.1f} °C" for k, v in temps.items())
    if hottest >= HOT_C or now:
        return Check("temperatures", "FAIL", summary + (f"; NOW: {', '.join(now)}" if now else
                                                      " (too hot)"), facts)
    if past:
        return Check("temperatures", "WARN", summary + f"; since boot: {', '.join(past)} "
                     "(check the power supply)", facts)
    return Check("temperatures", "PASS", summary, facts)


def check_storage(info: PlatformInfo) -> Check:
    if not info.storage:
        return Check("storage", "WARN", "no SD card or eMMC found (recording on another disk?)")
    parts, status = [], "PASS"
    for s in info.storage:
        part = f"{s.name}: {s.type} {s.product} {s.size_bytes / 1e9:.1f} GB, made {s.date}"
        if s.life_time:
            part += f", life used {s.life_time}, pre-EOL {s.pre_eol}"
            if s.pre_eol and s.pre_eol.strip() not in ("0x01", "0x00"):
                status = "WARN"
        parts.append(part)
    return Check("storage", status, "; ".join(parts),
                 {"devices": [dataclasses.asdict(s) if dataclasses.is_dataclass(s) else s
                              for s in info.storage]})


def check_camera(cfg: Config, clock: Clock, info: PlatformInfo, frames: int,
                 timeout_s: float) -> tuple[Check, Any]:
    cam = cfg.camera
    options: dict[str, Any] = {}
    if cam.source in ("picamera2", "csi"):
        options = {"bitrate_kbps": cfg.encoder.bitrate_kbps, "gop_s": cfg.encoder.gop_s,
                   "profile": cfg.encoder.profile, "hardware_encoder": info.kind in VC4_KINDS}
    elif cam.source.startswith(("rtsp", "/dev/video")):
        options = {"max_retries": 0}
    got: list[Any] = []
    error: list[str] = []
    try:
        src = open_source(source_spec(cam.source, cam.password_file), cam.width, cam.height, cam.fps,
                          (cam.lores_width, cam.lores_height), clock, realtime=cam.realtime,
                          loop=cam.loop, max_frames=frames, options=options)
    except Exception as exc:
        return Check("camera", "FAIL", f"{redact_url(cam.source)}: {exc}"), None

    def grab() -> None:
        try:
            for f in src.frames():
                got.append(f)
        except Exception as exc:
            error.append(str(exc))

    t0 = time.monotonic()
    t = threading.Thread(target=grab, name="hwcheck-camera", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        src.close()
        t.join(2.0)
    dt = time.monotonic() - t0
    facts = {"source": src.describe(), "frames": len(got)}
    if not got:
        return Check("camera", "FAIL", f"{redact_url(cam.source)}: no frame within {timeout_s:g} s"
                     + (f": {error[0]}" if error else ""), facts), None
    first = got[0]
    kind = "H.264 from the camera" if first.packet is not None and first.main is None else "raw"
    fps = (len(got) - 1) / max(1e-6, got[-1].mono - first.mono) if len(got) > 1 else 0.0
    summary = (f"{redact_url(cam.source)}: {len(got)} frames {first.width}x{first.height} ({kind}) in "
               f"{dt:.1f} s, {fps:.1f} fps by timestamps")
    status = "PASS" if len(got) >= frames else "WARN"
    return Check("camera", status, summary, facts), got


def check_encoder(cfg: Config, frames: list[Any] | None) -> Check:
    enc = cfg.encoder
    first = frames[0] if frames else None
    width, height = (first.width, first.height) if first else (cfg.camera.width, cfg.camera.height)
    encoded = first is not None and first.packet is not None and first.main is None
    try:
        encoder, report = open_encoder(list(enc.candidates) or None,
                                       StreamInfo("h264", width, height, cfg.camera.fps),
                                       bitrate_kbps=enc.bitrate_kbps, gop_s=enc.gop_s,
                                       profile=enc.profile, preset=enc.preset,
                                       fallback=enc.fallback, source_encoded=encoded)
    except Exception as exc:
        return Check("encoder", "FAIL", str(exc))
    try:
        if frames and not encoded:
            packets = [p for f in frames for p in encoder.encode(f)] + encoder.flush()
            if not packets:
                return Check("encoder", "FAIL", f"{report.chosen}: no output for camera frames",
                             report.as_dict())
    finally:
        encoder.close()
    rejected = report.rejected
    summary = f"{report.chosen}" + (f" ({len(rejected)} rejected)" if rejected else "")
    summary += "".join(f"\n{'':20}- {k}: {v}" for k, v in rejected.items())
    return Check("encoder", "PASS", summary, report.as_dict())


def check_gpio(cfg: Config, *, pin_factory: Any = None, sleep=time.sleep) -> Check:
    spec = gpio_spec(cfg)
    try:
        devs = build_devices(spec, pin_factory=pin_factory, sleep=sleep)
    except Exception as exc:
        return Check("gpio", "FAIL", str(exc))
    done, problems, facts = [], [], {}
    try:
        if devs.ir is not None:
            devs.ir.on()
            lit = devs.ir.is_on
            sleep(0.5)
            devs.ir.off()
            (done if lit and not devs.ir.is_on else problems).append("IR on/off")
        if devs.ircut is not None:
            devs.ircut.night()
            sleep(0.5)
            devs.ircut.day()
            (done if devs.ircut.position == "day" else problems).append("IR-cut night→day")
        if devs.led is not None:
            for code in (LedCode.BOOTING, LedCode.NO_BROKER, LedCode.FAULT, LedCode.RECORDING):
                devs.led.set_code(code)
                sleep(0.3)
            devs.led.set_code(LedCode.OFF)
            done.append("status LED codes")
        if devs.light is not None:
            levels = [devs.light.read().level for _ in range(3)]
            facts["light_levels"] = levels
            done.append(f"light sensor {devs.light.kind} {levels[-1]:.2f}")
        facts["devices"] = devs.describe()
    except Exception as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        devs.close()
    if problems:
        return Check("gpio", "FAIL", "; ".join(problems), facts)
    if not done:
        return Check("gpio", "WARN", "no GPIO device configured ([gpio] pins all -1)", facts)
    return Check("gpio", "PASS", ", ".join(done) + "; left in safe state", facts)


def run_checks(cfg: Config, *, clock: Clock | None = None, root: str = "/", frames: int = 10,
               timeout_s: float = 20.0, pin_factory: Any = None, sleep=time.sleep,
               vcgencmd=None) -> list[Check]:
    """Run every check; never raises for a hardware problem (it becomes a FAIL)."""
    clock = clock or SystemClock()
    info = probe(root, vcgencmd=vcgencmd, encoders=True)
    checks = [check_platform(info), check_temperatures(info), check_storage(info)]
    cam_check, got = check_camera(cfg, clock, info, frames, timeout_s)
    checks.append(cam_check)
    checks.append(check_encoder(cfg, got))
    checks.append(check_gpio(cfg, pin_factory=pin_factory, sleep=sleep))
    return checks


def render(checks: list[Check]) -> str:
    lines = [f"{c.status:<5} {c.name:<13} {c.summary}" for c in checks]
    fails = sum(c.status == "FAIL" for c in checks)
    warns = sum(c.status == "WARN" for c in checks)
    lines.append(f"hwcheck: {len(checks) - fails - warns} passed, {warns} warnings, {fails} failed")
    return "\n".join(lines)


#: The provisioned node's config (camnode-provision image installs it there).
NODE_CONFIG = "/etc/camnode/node.toml"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``camnode hwcheck`` (and ``python -m node.hwcheck``)."""
    ap.add_argument("--config", help=f"node config (TOML); default: {NODE_CONFIG} when it exists, "
                    "else built-in defaults")
    ap.add_argument("--frames", type=int, default=10, help="camera frames to grab")
    ap.add_argument("--timeout", type=float, default=20.0, help="camera timeout (s)")
    ap.add_argument("--root", default="/", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--safe-state", action="store_true", help="only drive IR off, filter to day")


def run(args: argparse.Namespace) -> int:
    """Exit code: 0 every check passed (warnings allowed), 1 a check failed, 2 bad config."""
    path = args.config or (NODE_CONFIG if Path(NODE_CONFIG).is_file() else None)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.safe_state:
        try:
            apply_safe_state(gpio_spec(cfg))
        except Exception as exc:
            print(f"safe state failed: {exc}", file=sys.stderr)
            return 1
        print("GPIO safe state: IR off, IR-cut filter in day position")
        return 0
    if path and not args.json:
        print(f"config: {path}")
    checks = run_checks(cfg, root=args.root, frames=args.frames, timeout_s=args.timeout)
    if args.json:
        print(json.dumps([dataclasses.asdict(c) for c in checks], indent=2, default=str))
    else:
        print(render(checks))
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hwcheck", description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
