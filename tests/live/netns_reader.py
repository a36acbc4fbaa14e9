"""An RTSP viewer (PyAV) for the 4G-link test: ``python netns_reader.py URL SECONDS`` prints
``{"frames": n, "size": [w, h], "longest_gap_s": g}`` for what it decoded in that time."""

from __future__ import annotations

import json
import sys
import time

import av


def main(url: str, seconds: float) -> int:
    frames, size, gap, last = 0, None, 0.0, None
    t0 = time.monotonic()
    try:
        with av.open(url, options={"rtsp_transport": "tcp", "timeout": "5000000"}, timeout=10) as c:
            for frame in c.decode(video=0):
                now = time.monotonic()
                frames += 1
                size = [frame.width, frame.height]
                if last is not None:
                    gap = max(gap, now - last)
                last = now
                if now - t0 > seconds:
                    break
    except av.error.FFmpegError as exc:
        print(json.dumps({"frames": frames, "size": size, "longest_gap_s": gap, "error": str(exc)}))
        return 0
    print(json.dumps({"frames": frames, "size": size, "longest_gap_s": round(gap, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2])))
