"""Is the push's TCP connection still acknowledged? (Linux ``TCP_INFO``.)

A cut 4G link does not make writes fail: the kernel's send buffer (up to megabytes) swallows
minutes of a sub-stream while nothing reaches the relay, and FFmpeg's RTSP muxer does not
report failed interleaved writes anyway. What does tell is the socket itself: data waiting
for an acknowledgement and no ACK received for a while. This module finds the push's socket
(by its peer address, among this process's descriptors), reads that from ``TCP_INFO``, and
shuts the socket down when the link is gone, which unblocks the muxer at once.
Cost: a directory listing of ``/proc/self/fd`` once per push, one ``getsockopt`` per check.
Thread: any.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct

_TCP_INFO = getattr(socket, "TCP_INFO", 11)
# struct tcp_info: 8 bytes of u8 fields, then u32s: rto ato snd_mss rcv_mss unacked sacked lost
# retrans fackets last_data_sent last_ack_sent last_data_recv last_ack_recv ...
_U32 = struct.Struct("=13I")


def _peer(fd: int) -> tuple[str, int] | None:
    try:
        s = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    try:
        if s.type != socket.SOCK_STREAM:
            return None
        return s.getpeername()[:2]
    except OSError:
        return None
    finally:
        s.close()


def sockets_to(host: str, port: int) -> set[int]:
    """This process's TCP sockets connected to ``host:port`` (descriptor numbers)."""
    addrs = {ai[4][0] for ai in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    out = set()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
        except OSError:
            continue
        peer = _peer(fd)
        if peer is not None and peer[1] == port and peer[0] in addrs:
            out.add(fd)
    return out


def unacked_for(fd: int) -> float:
    """Seconds since the last ACK while sent data waits to be acknowledged (0: all acknowledged)."""
    s = socket.socket(fileno=os.dup(fd))
    try:
        raw = s.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 8 + _U32.size)
    finally:
        s.close()
    fields = _U32.unpack_from(raw, 8)
    unacked, last_ack_recv_ms = fields[4], fields[12]
    return last_ack_recv_ms / 1000.0 if unacked else 0.0


def shut(fd: int) -> None:
    """Shut the connection down (both ways): a blocked or later write fails at once."""
    with contextlib.suppress(OSError):
        s = socket.socket(fileno=os.dup(fd))
        try:
            s.shutdown(socket.SHUT_RDWR)
        finally:
            s.close()
