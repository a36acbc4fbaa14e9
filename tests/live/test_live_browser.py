"""Headless Chromium (Debian's, driven through chromium-driver) plays a pole's stream through
the station's relay (Janus, WebRTC): the video's time advances and a frame is not blank."""

from __future__ import annotations

import time

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.live.rig import ask, cli_live, wait_node_ready

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"

FRAME_STATS = """
const v = document.getElementById('video');
if (!v.videoWidth) return null;
const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
const g = c.getContext('2d'); g.drawImage(v, 0, 0);
const d = g.getImageData(0, 0, c.width, c.height).data;
let n = 0, s = 0, s2 = 0;
for (let i = 0; i < d.length; i += 16) {
  const y = (d[i] + d[i + 1] + d[i + 2]) / 3; n++; s += y; s2 += y * y;
}
const m = s / n;
return {w: c.width, h: c.height, mean: m, sd: Math.sqrt(s2 / n - m * m), t: v.currentTime,
        png: c.toDataURL('image/png')};
"""


@pytest.fixture
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
                "--disable-features=WebRtcHideLocalIpsWithMdns"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield drv
    drv.quit()


def test_chromium_plays_the_sub_stream_through_the_relay(rig, browser, tmp_path):
    wait_node_ready(rig)
    res = cli_live(rig, "--stream", "sub", "--minutes", "2", "--url")
    assert res.returncode == 0, res.stderr
    page = res.stdout.splitlines()[1]
    browser.get(page)
    first = None
    deadline = time.monotonic() + 40
    stats = None
    while time.monotonic() < deadline:
        stats = browser.execute_script(FRAME_STATS)
        if stats and first is None:
            first = stats["t"]
        if stats and first is not None and stats["t"] > first + 1.0:
            break
        time.sleep(0.5)
    state = browser.execute_script("return document.getElementById('state').textContent")
    assert stats is not None, f"no video; page says {state!r}"
    assert stats["t"] > first + 1.0, (stats["t"], first, state)
    assert (stats["w"], stats["h"]) == (160, 96)
    assert stats["sd"] > 10, stats  # a street scene, not a flat (black/grey) picture
    import base64

    (tmp_path / "browser-frame.png").write_bytes(base64.b64decode(stats["png"].split(",", 1)[1]))
    ask(rig, {"stop": True})


def test_the_page_plays_nothing_without_a_token_an_expired_or_a_forged_one(rig, browser):
    """Janus in signed-token mode: no token, one whose time is up (a page kept from a session
    that ended), or one signed with another key — each refused at the first request."""
    from urllib.parse import quote

    from station.live.credentials import load_secret
    from station.live.janus import viewer_token

    wait_node_ready(rig)
    res = cli_live(rig, "--stream", "sub", "--minutes", "1", "--url")
    assert res.returncode == 0, res.stderr
    page = res.stdout.splitlines()[1].split("#", 1)[0]
    secret = load_secret(rig["relay"].state_dir)
    for fragment in ("", "#token=" + quote(viewer_token(secret, time.time() - 5), safe=""),
                     "#token=" + quote(viewer_token(b"another station's secret, 64 chars", time.time() + 600),
                                       safe="")):
        browser.get("about:blank")
        browser.get(page + fragment)
        deadline = time.monotonic() + 10
        state = ""
        while time.monotonic() < deadline and "error" not in state:
            state = browser.execute_script("return document.getElementById('state').textContent")
            time.sleep(0.3)
        assert "error" in state and "Unauthorized" in state, (fragment[:20], state)
        assert browser.execute_script(FRAME_STATS) is None
    ask(rig, {"stop": True})
