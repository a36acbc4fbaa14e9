"""A whole ward on one machine for the console's browser tests: real mosquitto, a real node
process on real footage with the real model, the console, and headless chromium."""

from __future__ import annotations

import pytest

from tests.console.harness import browser, start_console
from tests.nodeproc import NodeProcess


def pole_config(path, port: int, storage, shared, key, node_id: str = "pole-3"):
    clip = shared / "media/videos/one-by-one-person-detection.mp4"  # first person at 6.2 s
    models = shared / "models"
    path.write_text(
        f'[node]\nid = "{node_id}"\nname = "Pole 3"\n\n'
        f'[camera]\nsource = "{clip}"\nwidth = 768\nheight = 432\nfps = 10.0\n'
        'lores_width = 320\nlores_height = 180\nloop = true\n\n'
        '[encoder]\ngop_s = 1.0\nbitrate_kbps = 600\n\n'
        f'[storage]\npath = "{storage}"\nsegment_s = 2.0\n\n'
        f'[record]\nmax_age_days = 1.0\nsigning_key = "{key}"\n\n'
        f'[detect]\nmodel = "{models / "ssd_mobilenet_v1_coco_quant.tflite"}"\n'
        f'labels = "{models / "coco_labels.txt"}"\nthreads = 1\n\n'
        f'[mqtt]\nport = {port}\nheartbeat_s = 1.0\nkeepalive_s = 5\n')
    return path


INVENTORY = ("node_id,pole,lat,lon,facing_deg,address,neighbours,signing_public_key\n"
             "pole-3,Cột 3 — Hàng Bạc,21.03405,105.85235,135,\"12 Hàng Bạc, Hoàn Kiếm\",pole-4,{key}\n"
             "pole-4,Cột 4 — Đinh Liệt,21.03330,105.85290,135,\"3 Đinh Liệt, Hoàn Kiếm\",pole-3 pole-5,\n"
             "pole-5,Cột 5 — Hàng Dầu,21.03225,105.85345,135,\"20 Hàng Dầu\",pole-4,\n")


@pytest.fixture(scope="module")
def ward(tmp_path_factory, shared_dir):
    """(console, node process, broker) — started once for a module of browser tests: the console
    (which brings the archive's schema up and imports the inventory with the pole's signing
    key), the real station service archiving into the same database, then the real node."""
    from node.localbroker import LocalBroker
    from node.record.integrity import generate_key
    from tests.stationproc import ServeProcess

    tmp = tmp_path_factory.mktemp("ward")
    b = LocalBroker().start()
    key = tmp / "signing.key"
    public = generate_key(key)
    inv = tmp / "inventory.csv"
    inv.write_text(INVENTORY.format(key=public), encoding="utf-8")
    db = f"sqlite:///{tmp / 'archive.db'}"
    console = start_console(tmp, b.port, db=db, inventory=str(inv))
    serve = ServeProcess(b.port, db, tmp / "serve.log", "--media", str(tmp / "media"))
    node = None
    try:
        assert serve.wait_log("serving", 30), serve.log()
        node = NodeProcess(pole_config(tmp / "node.toml", b.port, tmp / "rec", shared_dir, key),
                           tmp / "node.log")
        yield console, node, b
    finally:
        if node is not None:
            node.close()
        serve.stop()
        console.stop()
        b.cleanup()


@pytest.fixture(scope="module")
def drv():
    d = browser()
    try:
        yield d
    finally:
        d.quit()
