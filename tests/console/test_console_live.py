"""Live in the console: the live wall asks the real node for its sub-stream, the station's
real relay (GStreamer RTSP + Janus) carries it, and the wall's embedded player plays it in
headless chromium (the video's time advances, the picture is not flat); a click opens the main
stream. Uses the live tests' rig (broker, relay, node with a [live] section)."""

from __future__ import annotations

import time
from urllib.parse import unquote

import pytest
from selenium.webdriver.common.by import By

from station.live.credentials import load_secret
from station.live.janus import token_key
from tests.console.harness import browser, browser_login, http_login, screenshot, start_console, wait_until
from tests.live.rig import NODE, ask, make_rig, wait_node_ready

PLAYING = """
const v = document.querySelector('video');
if (!v || !v.videoWidth || v.currentTime <= 0) return null;
const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
const g = c.getContext('2d'); g.drawImage(v, 0, 0);
const d = g.getImageData(0, 0, c.width, c.height).data;
let s = 0, s2 = 0, n = 0;
for (let i = 0; i < d.length; i += 16) { const y = d[i]; s += y; s2 += y * y; n++; }
const m = s / n;
return {t: v.currentTime, w: v.videoWidth, h: v.videoHeight, sd: Math.sqrt(s2 / n - m * m)};
"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    yield from make_rig(tmp_path_factory)


def playing(drv, frame, seconds: float = 1.0, timeout: float = 45.0):
    """Inside ``frame``: the video's time advanced by ``seconds``; its last stats."""
    drv.switch_to.frame(frame)
    try:
        first = wait_until(lambda: drv.execute_script(PLAYING), timeout, 0.5)
        assert first, drv.execute_script("return document.body.innerText")
        last = wait_until(lambda: (s := drv.execute_script(PLAYING)) and s["t"] > first["t"] + seconds and s,
                          timeout, 0.5)
        return last
    finally:
        drv.switch_to.default_content()


def test_live_wall_plays_the_pole_and_a_click_opens_its_main_stream(rig, tmp_path):
    wait_node_ready(rig)
    template = rig["relay"].page_template()
    assert "key" not in template  # what goes on the console's command line carries no secret
    console = start_console(tmp_path, rig["broker"].port, live_url=template,
                            station_dir=str(rig["relay"].state_dir))
    drv = browser()
    try:
        assert wait_until(lambda: any(r["node"] == NODE and r["state"] in ("OK", "FAULT")
                                      for r in console.console.live.fleet.rows()), 30)
        browser_login(drv, console.url, "op")
        drv.get(console.url + "/live")
        frame = drv.find_element(By.CSS_SELECTOR, f'.tile[data-node="{NODE}"] iframe')
        # the console signed a viewer token for this user with the station's secret: good for the
        # live session it asked for (10 minutes) and a minute more, and the signing key not on it
        secret = load_secret(rig["relay"].state_dir)
        token = unquote(frame.get_attribute("src").split("#token=", 1)[1])
        expires = int(token.split(",", 1)[0])
        assert 600 <= expires - time.time() <= 661 and ",janus,janus.plugin.streaming:" in token
        key = token_key(secret)
        assert key not in drv.page_source
        stats = playing(drv, frame)
        assert stats, "the sub-stream did not play on the wall"
        assert (stats["w"], stats["h"]) == (160, 96) and stats["sd"] > 10, stats
        time.sleep(0.5)
        screenshot(drv, "13-live-wall")
        drv.find_element(By.CSS_SELECTOR, f'.tile[data-node="{NODE}"] a.open').click()
        assert wait_until(lambda: drv.current_url.endswith(f"/live/{NODE}"), 20)
        stats = playing(drv, drv.find_element(By.ID, "main-stream"))
        assert stats and stats["w"] == 480, stats  # the recorded main stream, not the sub
        screenshot(drv, "14-live-main")
        from station.console.audit import recent

        views = {e.action for e in recent(console.console.engine, 50, "op")}
        assert {"view:live-wall", "view:live"} <= views
        # a user without the live permission gets no page with the key
        tech = http_login(console.url, "tech")
        for path in ("/live", f"/live/{NODE}"):
            r = tech.get(path)
            assert r.status_code == 403 and key not in r.text and "token=" not in r.text, path
    finally:
        drv.quit()
        console.stop()
        ask(rig, {"stop": True})
