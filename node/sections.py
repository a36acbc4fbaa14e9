"""The sections of the node's config file: every field with its default, unit and description.

One class per ``[section]`` of the TOML file, declared with :func:`node.settings.setting`;
:mod:`node.config` reads, validates and documents them. Validators here are pure functions
returning an error message or ``None``.
"""

from __future__ import annotations

import re
from pathlib import Path

from node.settings import section, setting

_NODE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _check_node_id(v: str) -> str | None:
    if not _NODE_ID.match(v):
        return "expected 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit"
    return None


def _check_timezone(v: str) -> str | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {v!r}: expected an IANA name such as 'Asia/Ho_Chi_Minh'"
    return None


def _check_prefix(v: str) -> str | None:
    from node.link.topics import check_prefix

    return check_prefix(v)


def check_source(v: str) -> str | None:
    """Validate ``camera.source`` by its form (existence is checked when it opens)."""
    if v in ("synthetic", "demo", "picamera2", "csi"):
        return None
    if v.startswith("lavfi:"):
        return None if len(v) > 6 else "expected a filter graph after 'lavfi:'"
    if v.startswith("/dev/video"):
        return None if v[10:].isdigit() else "expected /dev/videoN"
    if "://" in v:
        scheme = v.split("://", 1)[0].lower()
        if scheme not in ("rtsp", "rtsps", "http", "https", "file"):
            return f"unsupported URL scheme {scheme!r}: expected rtsp://, rtsps://, http(s):// or file://"
        if scheme != "file" and not v.split("://", 1)[1].strip("/"):
            return "URL has no host"
        return None
    if v.startswith("/") or v.startswith(".") or "." in Path(v).name:
        return None
    return (
        "expected 'synthetic', a file path, 'lavfi:<graph>', '/dev/videoN' or a "
        "rtsp:// URL"
    )


def _even(v: int) -> str | None:
    return None if v % 2 == 0 else "must be even (YUV 4:2:0 needs even sizes)"


@section("Identity of this node.")
class NodeSection:
    id: str = setting(
        "demo-node", "Node id: the MQTT topic level and the name in footage.", check=_check_node_id
    )
    name: str = setting("Demo node", "Human name of the pole (street, number), shown on video.")
    timezone: str = setting(
        "Asia/Ho_Chi_Minh", "IANA time zone for local times shown on video (storage is UTC).",
        check=_check_timezone)


@section("The image source and its two streams (main for recording, lores for analysis).")
class CameraSection:
    source: str = setting(
        "synthetic",
        "What to capture: 'synthetic' (built-in street scene), a video file path (looped), "
        "'lavfi:<graph>', '/dev/videoN' (V4L2) or 'rtsp://...' (IP camera).",
        check=check_source,
    )
    password_file: str = setting(
        "", "An IP camera's password, in a file of its own (provisioned, 0600): it goes into the "
        "rtsp:// URL, which names the user (rtsp://admin@cam/...), only when the stream opens — "
        "never into the config, a command line or a log.")
    width: int = setting(1280, "Main stream width.", unit="px", minimum=16, maximum=7680, check=_even)
    height: int = setting(720, "Main stream height.", unit="px", minimum=16, maximum=4320, check=_even)
    fps: float = setting(15.0, "Capture frame rate.", unit="1/s", minimum=0.0, maximum=120.0,
                         exclusive_minimum=True)
    lores_width: int = setting(320, "Analysis (lores) stream width.", unit="px", minimum=16,
                               maximum=1920)
    lores_height: int = setting(240, "Analysis (lores) stream height.", unit="px", minimum=16,
                                maximum=1080)
    realtime: bool = setting(
        True, "Pace file and synthetic sources at fps (false: as fast as they decode, for tests)."
    )
    loop: bool = setting(True, "Loop a file source at its end (demo); false ends the run.")
    queue_frames: int = setting(
        6, "Frames buffered between capture and encoder; the oldest is dropped when full "
        "(a 1080p frame is 3 MB: keep this small on a 512 MB board).", minimum=1, maximum=120,
    )


@section("H.264 encoding of the main stream.")
class EncoderSection:
    bitrate_kbps: int = setting(1200, "Target bitrate with budget.mode = 'fixed' (the budget plans "
                                "its own otherwise).", unit="kbit/s", minimum=50, maximum=50_000)
    gop_s: float = setting(
        4.0, "Keyframe interval; segments and clips cut at keyframes. Longer saves bits on a still "
        "street (docs/recording.md); a clip starts up to one interval early.", unit="s",
        minimum=0.0, maximum=60.0, exclusive_minimum=True,
    )
    preset: str = setting("ultrafast", "libx264 preset (software fallback only).",
                          choices=("ultrafast", "superfast", "veryfast", "faster", "fast",
                                   "medium"))
    candidates: list[str] = setting(
        [], "Encoders to try, in order (FFmpeg names such as 'h264_v4l2m2m', 'libx264'); empty: "
        "the platform's order (camera's own H.264, hardware encoders, libx264 last).")
    fallback: str = setting("libx264", "When every listed candidate fails: 'libx264' (software) or "
                            "'fail' (refuse to start).", choices=("libx264", "fail"))
    profile: str = setting("high", "H.264 profile (a ceiling for libx264).",
                           choices=("baseline", "main", "high"))


@section("Where and how footage is kept.")
class StorageSection:
    path: str = setting("var/recordings", "Directory of segment files (on the SD card).")
    segment_s: float = setting(
        60.0, "Target segment length; cut at the first keyframe after it.", unit="s",
        minimum=2.0, maximum=3600.0,
    )


@section("Recording: durability, retention (the ring buffer) and evidence signing.")
class RecordSection:
    max_age_days: float = setting(30.0, "Delete footage older than this (protected clips excepted); "
                                  "also the retention target the heartbeat compares with.",
                                  unit="d", minimum=0.0, maximum=3650.0, exclusive_minimum=True)
    headroom_s: float = setting(3600.0, "Free-space floor as recording time at the measured bitrate: "
                                "oldest footage is deleted to keep this much free.", unit="s",
                                minimum=0.0, maximum=86400.0)
    min_free_mb: float = setting(256.0, "Free-space floor never below this.", unit="MiB",
                                 minimum=0.0, maximum=1e6)
    fragment_s: float = setting(2.0, "Longest fragment: at most this much video is lost at a power "
                                "cut.", unit="s", minimum=0.1, maximum=10.0)
    sync_fragments: bool = setting(True, "fdatasync every fragment: a power cut loses at most a "
                                   "fragment (without it, up to the writeback delay plus the ext4 "
                                   "journal's 5 s commit); costs one journal commit per fragment.")
    sweep_s: float = setting(10.0, "Retention sweep period (its own thread).", unit="s",
                             minimum=0.5, maximum=3600.0)
    queue_mb: float = setting(32.0, "Writer queue; past it packets drop to the next keyframe.",
                              unit="MiB", minimum=1.0, maximum=1024.0)
    signing_key: str = setting("", "Ed25519 key file signing the segment hash chain (written by "
                               "provisioning; empty: unsigned).")


@section("Connection to the central station's MQTT broker.")
class MqttSection:
    host: str = setting("127.0.0.1", "Broker host name or address.")
    port: int = setting(1883, "Broker TCP port.", minimum=1, maximum=65535)
    topic_prefix: str = setting("camnode", "First topic level; topics are <prefix>/<node id>/... "
                                "(letters, digits, '_', '-', '.'; no wildcards).", check=_check_prefix)
    username: str = setting("", "User name (empty: anonymous).")
    password: str = setting("", "Password (prefer password_file on a real node).")
    password_file: str = setting("", "File holding the password (provisioned, mode 0600).")
    tls_ca: str = setting("", "CA certificate file; set to use TLS.")
    tls_cert: str = setting("", "Client certificate (PEM) when the broker requires one (with tls_ca).")
    tls_key: str = setting("", "Its private key (PEM, mode 0600).")
    heartbeat_s: float = setting(10.0, "Heartbeat period.", unit="s", minimum=0.2, maximum=3600.0)
    keepalive_s: int = setting(30, "MQTT keepalive; the broker declares the node offline "
                               "(last will) after 1.5x this without traffic.", unit="s",
                               minimum=2, maximum=3600)
    reconnect_max_s: float = setting(15.0, "Longest wait between reconnect attempts (each attempt "
                                     "gives up after 5 s): a link that comes back is used within "
                                     "about this + 5 s.", unit="s", minimum=0.1, maximum=600.0)
    archive_ack: bool = setting(True, "Keep an event or snapshot in the outbox until the station's "
                                "archive acknowledges it on <prefix>/<id>/ack/... (false: until the "
                                "broker's PUBACK).")
    ack_resend_s: float = setting(60.0, "Send an outbox message again when the archive has not "
                                  "acknowledged it for this long (doubling each time, at most 1 h; "
                                  "every reconnect sends all again).", unit="s", minimum=0.5,
                                  maximum=3600.0)
    outbox_max_rows: int = setting(
        5000, "Most events/snapshots queued while the station is unreachable; beyond it the oldest "
        "are dropped and a `lost` notice names them.", minimum=10, maximum=1_000_000)
    outbox_max_mb: float = setting(64.0, "Most bytes the queue may hold.", unit="MB",
                                   minimum=1.0, maximum=100_000.0)
    outbox_max_age_h: float = setting(
        168.0, "Queued messages older than this are dropped (and named in a `lost` notice); "
        "0: no age limit.", unit="h", minimum=0.0, maximum=24 * 365.0)


@section("Logging.")
class LogSection:
    level: str = setting("INFO", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def _check_masks(v: list) -> str | None:
    from node.vision.motion import check_polygons

    return check_polygons(v)


def _check_cell(v: int) -> str | None:
    return None if v % 2 == 0 else "must be even"


@section("Motion detection on the lores stream, and motion events.")
class MotionSection:
    enabled: bool = setting(True, "Run motion detection (false: no motion and no object events).")
    fps: float = setting(
        10.0, "Lores frames per second given to analysis (the rest are skipped): 10 is plenty to "
        "see a person walk in; more costs CPU on every frame.", unit="1/s", minimum=1.0, maximum=60.0)
    threshold: float = setting(
        14.0, "Sensitivity: smallest change of a cell's brightness that counts as motion; lower is "
        "more sensitive.", unit="luma levels (0-255)", minimum=2.0, maximum=128.0)
    noise_factor: float = setting(
        4.0, "Sensitivity in noise: a cell must also change by this many times its own measured "
        "noise (night grain, foliage); higher ignores more flicker.", minimum=1.0, maximum=20.0)
    min_area: float = setting(
        0.005, "Smallest motion region, as a fraction of the frame (0.005 = 0.5 %); smaller regions "
        "(insects, rain drops) are ignored.", unit="fraction", minimum=0.0, maximum=0.5)
    cell_px: int = setting(4, "Grid cell size on the lores frame; larger is cheaper and coarser.",
                           unit="px", minimum=2, maximum=32, check=_check_cell)
    background_s: float = setting(10.0, "Time constant of the running background.", unit="s",
                                  minimum=0.5, maximum=600.0)
    still_s: float = setting(
        2.0, "A change that stays still this long joins the background (parked car, the ghost of "
        "someone who left).", unit="s", minimum=0.2, maximum=600.0)
    global_fraction: float = setting(
        0.6, "More than this fraction of the frame changing at once is a light jump (IR switch, "
        "headlights), not motion: the background is re-learnt.", unit="fraction",
        minimum=0.05, maximum=1.0)
    settle_frames: int = setting(3, "Frames ignored after a light jump or re-baseline.",
                                 minimum=0, maximum=100)
    masks: list[list[float]] = setting(
        [], "Areas never counted as motion: polygons as flat lists [x0, y0, x1, y1, x2, y2, ...] "
        "in relative coordinates (0..1, origin top-left), e.g. a tree or a busy road.",
        check=_check_masks)
    min_s: float = setting(0.2, "Motion must last this long to open a motion event.", unit="s",
                           minimum=0.0, maximum=60.0)
    quiet_s: float = setting(2.0, "A motion event ends after this long without motion.", unit="s",
                             minimum=0.1, maximum=600.0)
    max_s: float = setting(300.0, "Longest motion event; longer activity is split.", unit="s",
                           minimum=1.0, maximum=86400.0)
    cooldown_s: float = setting(0.0, "No new motion event for this long after one ends.", unit="s",
                                minimum=0.0, maximum=3600.0)
    night_threshold: float = setting(
        8.0, "Night (IR, monochrome picture) sensitivity: as threshold, for the night; lower finds "
        "dim figures.", unit="luma levels (0-255)", minimum=2.0, maximum=128.0)
    night_noise_factor: float = setting(
        3.0, "Night: as noise_factor, against the grain measured at night (kept apart from the "
        "day's).", minimum=1.0, maximum=20.0)
    min_area_px: float = setting(
        600.0, "Smallest motion region in main-image pixels at the bottom of the frame (near); "
        "0 uses min_area instead.", unit="px", minimum=0.0, maximum=1e7)
    far_scale: float = setting(
        0.3, "The smallest region at the top of the frame (far) as a fraction of min_area_px; "
        "linear in between.", unit="fraction", minimum=0.01, maximum=1.0)
    persist_frames: int = setting(
        2, "At night (IR), a cell counts as motion when it changed on this many consecutive frames "
        "(2 ignores most rain streaks, grain and insects darting past the lens; 1 = every change).",
        minimum=1, maximum=3)
    history_frames: int = setting(
        5, "A region's area is that of its track over this many frames: a small, dim mover adds "
        "up along its path.", minimum=1, maximum=50)
    passing_step: float = setting(
        0.5, "Largest step of the background a frame where something moves (an insect lit by "
        "the IR light leaves no bright trail); 0: no limit.", unit="luma levels", minimum=0.0,
        maximum=255.0)


@section("Object (person, vehicle) detection with a TFLite SSD model on motion regions.")
class DetectSection:
    enabled: bool = setting(True, "Run object detection when the model file exists.")
    model: str = setting(
        "models/ssd_mobilenet_v1_coco_quant.tflite",
        "TFLite SSD detection model (COCO SSD MobileNet v1 quantised); a relative path is "
        "relative to the config file's directory (the working directory without a file). "
        "Missing file: motion only, and health says why.")
    labels: str = setting("models/coco_labels.txt",
                          "Labels file of the model: one label a line, line number = class id.")
    classes: list[str] = setting(
        ["person"], "Classes that raise object events (model labels, e.g. person, bicycle, car, "
        "motorcycle; 'motorbike' is accepted for motorcycle).")
    score: float = setting(0.5, "Minimum detection score.", minimum=0.05, maximum=1.0)
    min_hits: int = setting(
        3, "A detection counts once the same object was found on this many inference calls "
        "(suppresses one-frame false positives).", minimum=1, maximum=20)
    fps: float = setting(5.0, "Inference rate while unexplained motion is present.", unit="1/s",
                         minimum=0.1, maximum=30.0)
    track_s: float = setting(
        2.0, "Re-check interval of an object already in an event while it moves (sooner after "
        "a miss).", unit="s",
        minimum=0.05, maximum=60.0)
    still_s: float = setting(
        8.0, "Re-check interval of an object in an event that has stopped moving (a person "
        "waiting at a gate).", unit="s", minimum=0.1, maximum=600.0)
    threads: int = setting(2, "Interpreter threads.", minimum=1, maximum=8)
    quiet_s: float = setting(
        2.5, "An object event ends this long after the object was last seen; a new visit after "
        "a longer gap is a new event.", unit="s", minimum=0.1, maximum=600.0)
    max_s: float = setting(300.0, "Longest object event; longer presence is split.", unit="s",
                           minimum=1.0, maximum=86400.0)
    cooldown_s: float = setting(0.0, "No new object event for this long after one ends.", unit="s",
                                minimum=0.0, maximum=3600.0)
    pre_roll_s: float = setting(5.0, "Footage kept before an object event (protected clip).",
                                unit="s", minimum=0.0, maximum=600.0)
    post_roll_s: float = setting(5.0, "Footage kept after an object event (protected clip).",
                                 unit="s", minimum=0.0, maximum=600.0)
    smooth_crops: bool = setting(
        True, "Small regions (a far person): crops no larger than the model input (the main "
        "stream's own resolution), enlarged bilinearly; false: at least 35 % of the frame, "
        "enlarged by nearest pixel, which the SSD misses small people in.")
    scan_on_rebaseline: bool = setting(
        True, "After the motion background is (re)learnt (start, IR switch), look at the whole "
        "frame once in 2x2 tiles plus the whole (5 model calls): someone standing there is found.")
    tiles_for_small: float = setting(
        0.15, "When motion regions are too many for crops and all smaller than this fraction "
        "of the short side, the model looks at the 2x2 tiles holding them, not the whole "
        "frame (0: whole frame).", unit="fraction", minimum=0.0, maximum=1.0)
    min_crop: float = setting(
        0.25, "Smallest crop around a motion region, as a fraction of the frame's short side: "
        "smaller shows a small person larger to the model (0.35 before issue 14).",
        unit="fraction", minimum=0.05, maximum=1.0)
    max_calls_s: float = setting(
        10.0, "Inference budget: at most this many model calls (crops, tiles) in any second; "
        "0: no limit. A Pi 4 spends about 0.14 s a call.", unit="1/s", minimum=0.0, maximum=100.0)


@section("Day/night switching: IR light, IR-cut filter and camera tuning.")
class DayNightSection:
    source: str = setting(
        "auto", "What decides night: 'sensor' (light sensor), 'luma' (picture brightness), 'sun' "
        "(position + clock), 'auto' (the sun decides full day and full night; at dawn and dusk the "
        "sensor, else the picture, times the switch — docs/hardware.md), or "
        "'fixed-day'/'fixed-night'.",
        choices=("auto", "sensor", "luma", "sun", "fixed-day", "fixed-night"))
    light_night_below: float = setting(0.25, "Sensor brightness (0-1) under which night begins.",
                                       minimum=0.0, maximum=1.0)
    light_day_above: float = setting(0.35, "Sensor brightness (0-1) above which day returns "
                                     "(> light_night_below: hysteresis).", minimum=0.0, maximum=1.0)
    luma_night_below: float = setting(40.0, "Mean picture luma (0-255) under which night begins.",
                                      minimum=0.0, maximum=255.0)
    luma_day_above: float = setting(110.0, "Mean luma above which day returns; high because the IR "
                                    "light brightens the night picture itself.", minimum=0.0, maximum=255.0)
    latitude: float = setting(10.78, "Node latitude, for the sun (degrees north).",
                              unit="deg", minimum=-90.0, maximum=90.0)
    longitude: float = setting(106.70, "Node longitude, for the sun (degrees east).",
                               unit="deg", minimum=-180.0, maximum=180.0)
    confirm_s: float = setting(20.0, "A change of light must hold this long before a switch "
                               "(headlights are not dawn).", unit="s", minimum=0.0, maximum=3600.0)
    min_dwell_s: float = setting(120.0, "Shortest stay in a mode (no flapping at dusk).", unit="s",
                                 minimum=0.0, maximum=86400.0)
    check_s: float = setting(2.0, "How often the light is evaluated.", unit="s", minimum=0.1,
                             maximum=600.0)
    ir_brightness: float = setting(1.0, "IR illuminator brightness at night (0-1; PWM only).",
                                   minimum=0.0, maximum=1.0)
    override_max_min: float = setting(60.0, "Longest technician override before the node "
                                      "returns to automatic.", unit="min", minimum=1.0, maximum=1440.0)

    def cross_check(self) -> tuple[str, str] | None:
        """Hysteresis needs day above night (equal thresholds would flap)."""
        if self.light_day_above <= self.light_night_below:
            return ("light_day_above", f"must be above light_night_below ({self.light_night_below}), "
                    f"got {self.light_day_above}")
        if self.luma_day_above <= self.luma_night_below:
            return ("luma_day_above", f"must be above luma_night_below ({self.luma_night_below}), "
                    f"got {self.luma_day_above}")
        return None


@section("GPIO devices: IR illuminator, IR-cut filter, light sensor, status LED (BCM pin numbers; "
         "-1 = not fitted). See docs/hardware.md for wiring.")
class GpioSection:
    factory: str = setting(
        "auto", "gpiozero pin factory: 'auto' (gpiozero's order; Pi 4), 'lgpio' (Pi 5), 'rpigpio', "
        "'pigpio', 'native', 'mock' (tests), 'none' (no GPIO, e.g. Jetson).",
        choices=("auto", "none", "mock", "lgpio", "rpigpio", "pigpio", "native"))
    chip: int = setting(-1, "gpiochip for lgpio (-1: default; see `make hwcheck`).", minimum=-1,
                        maximum=64)
    ir_pin: int = setting(-1, "IR illuminator driver input.", minimum=-1, maximum=63)
    ir_active_high: bool = setting(True, "IR LEDs light when the pin is high.")
    ir_pwm: bool = setting(False, "Drive the IR illuminator with PWM (brightness control).")
    ir_pwm_hz: float = setting(400.0, "IR PWM frequency.", unit="Hz", minimum=10.0, maximum=50_000.0)
    ir_brightness: float = setting(1.0, "Default IR brightness with PWM.", minimum=0.0, maximum=1.0)
    ircut_mode: str = setting("none", "IR-cut filter drive: 'none', 'level' (one pin), 'pulse' "
                              "(latching filter via an H-bridge, two pins).",
                              choices=("none", "level", "pulse"))
    ircut_pin: int = setting(-1, "IR-cut pin (level), or H-bridge input A (pulse: towards day).",
                             minimum=-1, maximum=63)
    ircut_pin_b: int = setting(-1, "H-bridge input B (pulse: towards night).", minimum=-1, maximum=63)
    ircut_night_high: bool = setting(True, "Level mode: a high pin moves the filter out (night).")
    ircut_pulse_ms: float = setting(100.0, "Pulse length for a latching filter.", unit="ms",
                                    minimum=1.0, maximum=2000.0)
    light_mode: str = setting("none", "Light sensor: 'none', 'digital' (comparator module), 'ldr' "
                              "(LDR + capacitor), 'iio' (ADC through the kernel's IIO driver).",
                              choices=("none", "digital", "ldr", "iio"))
    light_pin: int = setting(-1, "Light sensor pin (digital, ldr).", minimum=-1, maximum=63)
    light_dark_high: bool = setting(True, "Digital module: output high means dark.")
    light_iio_path: str = setting("", "IIO channel file, e.g. "
                                  "/sys/bus/iio/devices/iio:device0/in_voltage0_raw.")
    light_iio_full_scale: float = setting(4095.0, "ADC reading at full brightness.", minimum=1.0,
                                          maximum=1e9)
    light_iio_invert: bool = setting(False, "ADC reads high in the dark (LDR on the low side).")
    light_charge_limit_s: float = setting(0.01, "LDR: longest charge time timed (dark).", unit="s",
                                          minimum=0.001, maximum=1.0)
    light_queue_len: int = setting(5, "LDR: readings averaged.", minimum=1, maximum=100)
    led_pin: int = setting(-1, "Status LED.", minimum=-1, maximum=63)
    led_active_high: bool = setting(True, "Status LED lights when the pin is high.")


@section("On-screen text burned into the recorded picture (not into a passed-through IP camera "
         "stream, which keeps the camera's own).")
class OverlaySection:
    enabled: bool = setting(True, "Stamp node name and local date/time (with UTC offset).")
    position: str = setting("top-left", "Corner of the text.",
                            choices=("top-left", "top-right", "bottom-left", "bottom-right"))
    scale: int = setting(0, "Size of a font dot (0: auto, 1 per 240 picture rows).", unit="px",
                         minimum=0, maximum=16)
    show_name: bool = setting(True, "Include the node name (node.name) above the time.")


# -- storage budget (issue 13) ---------------------------------------------------------------
@section("Storage budget: the encoder's rate planned from the card's usable space and the "
         "retention target (record.max_age_days), then steered by the bytes actually written "
         "(docs/recording.md).")
class BudgetSection:
    mode: str = setting("budget", "'budget': plan and hold the rate that keeps the retention target "
                        "(libx264: constant quality under a cap; hardware: bitrate); 'fixed': "
                        "encoder.bitrate_kbps as set, never changed.", choices=("budget", "fixed"))
    crf_best: float = setting(23.0, "Best quality the budget spends on libx264 (CRF, lower is "
                              "better): a roomy card is not filled with invisible detail.",
                              minimum=0.0, maximum=51.0)
    crf_floor: float = setting(42.0, "Quality floor for libx264 (CRF): if even this cannot keep the "
                               "retention target, the node raises a retention fault with the numbers.",
                               minimum=0.0, maximum=51.0)
    min_kbps: int = setting(150, "Quality floor for encoders without CRF (h264_v4l2m2m, picamera2).",
                            unit="kbit/s", minimum=16, maximum=50_000)
    max_kbps: int = setting(4000, "Highest bitrate spent on encoders without CRF.", unit="kbit/s",
                            minimum=16, maximum=50_000)
    peak_factor: float = setting(3.0, "Short-term cap (VBV maxrate) as a multiple of the budget's "
                                 "average rate: a busy street cannot outrun the card.",
                                 minimum=1.0, maximum=20.0)
    event_boost_crf: float = setting(4.0, "Event tier: while an object event is open the encoder "
                                     "spends this many CRF steps more quality (bitrate encoders: "
                                     "x 2^(n/6)); 0 turns the tier off.", minimum=0.0, maximum=12.0)
    step_s: float = setting(3600.0, "How often the loop re-plans the quality from the measured bytes.",
                            unit="s", minimum=10.0, maximum=86_400.0)

    def cross_check(self) -> tuple[str, str] | None:
        """The floor must be worse than the best quality (CRF: higher; bitrate: lower)."""
        if self.crf_floor <= self.crf_best:
            return ("crf_floor", f"must be above crf_best ({self.crf_best:g}): a higher CRF is a "
                    f"lower quality, got {self.crf_floor:g}")
        if self.min_kbps >= self.max_kbps:
            return ("min_kbps", f"must be below max_kbps ({self.max_kbps}), got {self.min_kbps}")
        return None


@section("Live view: on request (cmd/live) the node pushes a stream to the station's media relay "
         "(RTSP RECORD over one outgoing TCP connection, so it works behind a carrier's NAT).")
class LiveSection:
    relay: str = setting("", "The station relay's RTSP address, e.g. 'rtsp://station:8554' "
                         "(empty: live view off).")
    username: str = setting("", "Stream user name at the relay (empty: the node id).")
    password: str = setting("", "Stream password (prefer password_file on a real node).")
    password_file: str = setting("", "File holding the stream password (provisioned, mode 0600).")
    max_minutes: float = setting(60.0, "Longest session one request may ask for.", unit="min",
                                 minimum=0.1, maximum=24 * 60.0)
    monthly_cap_mb: float = setting(0.0, "Live data allowed per calendar month (UTC); a new session "
                                    "past it is refused (0: no cap).", unit="MB", minimum=0.0,
                                    maximum=1e7)
    sub_width: int = setting(640, "Sub-stream width.", unit="px", minimum=16, maximum=1920, check=_even)
    sub_height: int = setting(360, "Sub-stream height.", unit="px", minimum=16, maximum=1080, check=_even)
    sub_fps: float = setting(10.0, "Sub-stream frame rate (at most the camera's).", unit="1/s",
                             minimum=1.0, maximum=60.0)
    sub_bitrate_kbps: int = setting(250, "Sub-stream bitrate (VBV-capped).", unit="kbit/s", minimum=30,
                                    maximum=5000)
    sub_gop_s: float = setting(1.0, "Sub-stream keyframe interval: a viewer starts within it.",
                               unit="s", minimum=0.2, maximum=10.0)
    timeout_s: float = setting(5.0, "A push that cannot send for this long ends (link cut).", unit="s",
                               minimum=1.0, maximum=120.0)
    serve_port: int = setting(0, "The node's own RTSP server for a VMS on the LAN/VPN: "
                              "rtsp://<user>@<node>:<port>/<node id>/main (0: off).", minimum=0,
                              maximum=65535)
    serve_address: str = setting("0.0.0.0", "Address the node's RTSP server listens on.")
    serve_username: str = setting("viewer", "User name a VMS gives the node's RTSP server.")
    serve_password_file: str = setting("", "File holding that user's password (provisioned, 0600); "
                                       "required when serve_port is set.")
