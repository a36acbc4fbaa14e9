"""A recorder process to be killed: feeds a real H.264 clip into a real Recorder until SIGKILL.

Run as ``python tests/record_crashee.py ROOT CLIP OFFSET_S SPEED SEGMENT_S``. It opens the
store (which recovers whatever the previous kill left), prints ``ready``, then writes the
clip's packets (shifted ``OFFSET_S`` seconds onward, paced at ``SPEED`` x real time) and
prints ``fed <media end µs>`` after each write, flushed, so the killer knows what was handed
to the recorder before it died. The recorder's own threads (writer, retention) run as in the
app.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.clock import FakeClock
from node.record.recorder import Recorder
from node.record.retention import Policy
from node.record.segment import to_us
from tests.record_media import T0, clip_packets, retime


def main(argv: list[str]) -> int:
    root, clip = Path(argv[0]), Path(argv[1])
    offset, speed, segment_s = float(argv[2]), float(argv[3]), float(argv[4])
    info, pkts = clip_packets(clip)
    pkts = retime(pkts, offset)
    rec = Recorder(root, FakeClock(T0), segment_s=segment_s, sweep_s=0.5,
                   policy=Policy(headroom_s=0, min_free_bytes=0))
    rec.start(info)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    t0 = time.monotonic()
    m0 = pkts[0].mono
    frame = 1.0 / info.fps
    for p in pkts:
        delay = (p.mono - m0) / speed - (time.monotonic() - t0)
        if delay > 0:
            time.sleep(delay)
        rec.write(p)
        out.write(f"fed {to_us(p.utc) + round(frame * 1e6)}\n")
        out.flush()
    rec.close()
    out.write("done\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
