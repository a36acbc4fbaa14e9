"""Write a board's OS image (``.img`` or ``.img.xz``) to a card or an image file, then read it back.

``camnode-provision flash IMAGE DEVICE`` is the installer's first step, before
``camnode-provision image``. It never guesses a target: DEVICE is required, must already exist
(a card's block device, or an image file made with ``truncate -s 8G disk.img``), and is refused
when it is mounted (it or any of its partitions), when it is the disk this machine runs from, when
it is smaller than the image, or when it is the image itself. The data is streamed (an ``.xz``
image is decompressed on the fly, its size read from the xz index), flushed to the card, dropped
from the page cache and read back: the read-back must hash to what was written, so a card that
silently loses writes (a fake-capacity card, a failing one, one pulled out) is caught and named.

Cost: the image is read once and the card written once and read once (two passes over the card).
"""

from __future__ import annotations

import hashlib
import lzma
import os
import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from provisioning.errors import ProvisionError, ToolError

CHUNK = 4 << 20  # bytes per write and per compared block
#: mount points whose disk is "the system disk" (writing over it destroys this machine)
SYSTEM_MOUNTS = ("/", "/boot", "/boot/efi", "/boot/firmware", "/usr", "/var", "/home")


class FlashError(ToolError):
    """The card did not take the image (write failed or the read-back differs): exit 1."""


@dataclass(frozen=True)
class Flashed:
    target: Path
    size: int  # bytes of the (decompressed) image written and verified
    sha256: str


# --- the image --------------------------------------------------------------------------------------

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated number")
        b = buf[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return value, pos
        shift += 7


def xz_size(path: Path) -> int:
    """Uncompressed size of an ``.xz`` file, from its index (no decompression).
    Handles concatenated streams and stream padding."""
    total = 0
    with path.open("rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        while end > 0:
            fh.seek(end - 4)
            if fh.read(4) == b"\0\0\0\0":  # stream padding between streams
                end -= 4
                continue
            if end < 24:
                raise ValueError("too short")
            fh.seek(end - 12)
            footer = fh.read(12)
            if footer[10:12] != b"YZ":
                raise ValueError("no xz stream footer")
            (backward,) = struct.unpack_from("<I", footer, 4)
            index_size = (backward + 1) * 4
            fh.seek(end - 12 - index_size)
            index = fh.read(index_size)
            if not index or index[0] != 0:
                raise ValueError("no xz index")
            records, pos = _varint(index, 1)
            blocks = 0
            for _ in range(records):
                unpadded, pos = _varint(index, pos)
                size, pos = _varint(index, pos)
                total += size
                blocks += unpadded + (-unpadded % 4)
            end = end - 12 - index_size - blocks - 12  # minus the blocks and the stream header
    return total


def image_size(image: Path) -> int:
    if image.suffix == ".xz":
        try:
            return xz_size(image)
        except (ValueError, OSError) as exc:
            raise ProvisionError(f"{image}: not a readable .xz image ({exc})") from None
    return image.stat().st_size


def _chunks(image: Path) -> Iterator[bytes]:
    opener = lzma.open if image.suffix == ".xz" else open
    try:
        with opener(image, "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk
    except lzma.LZMAError as exc:
        raise ProvisionError(f"{image}: the .xz image is damaged ({exc}); download it again") from None


# --- the target --------------------------------------------------------------------------------------

def _mounts(table: Path) -> list[tuple[str, str]]:
    try:
        lines = table.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        f = line.split()
        if len(f) >= 2:
            out.append((f[0].replace("\\040", " "), f[1].replace("\\040", " ")))
    return out


def _disk_of(dev: str, sys_block: Path) -> str:
    """``/dev/sda2`` → ``/dev/sda``, ``/dev/mmcblk0p1`` → ``/dev/mmcblk0`` (via sysfs); anything
    else (an image file, an unknown device) is its own disk."""
    name = Path(dev).name
    part = sys_block / name
    if (part / "partition").is_file():
        return "/dev/" + part.resolve().parent.name
    return dev


def _names(target: Path, sys_block: Path) -> set[str]:
    """What the mount table may call the target: its path, and the loop devices backed by it."""
    names = {str(target), str(target.resolve())}
    try:
        for loop in sys_block.glob("loop*/loop/backing_file"):
            if loop.read_text().strip() == str(target.resolve()):
                names.add("/dev/" + loop.parent.parent.name)
    except OSError:
        pass
    return names


def check_target(target: Path, size: int, *, image: Path, mounts: Path = Path("/proc/mounts"),
                 sys_block: Path = Path("/sys/class/block")) -> int:
    """Refuse a target that must not be written; returns its capacity in bytes."""
    if not target.exists():
        hint = ("no such device (is the card in? lsblk lists them)" if str(target).startswith("/dev/")
                else "no such file (make an image-file target with: truncate -s 8G FILE)")
        raise ProvisionError(f"{target}: {hint}")
    st = target.stat()
    block = stat.S_ISBLK(st.st_mode)
    if not block and not stat.S_ISREG(st.st_mode):
        raise ProvisionError(f"{target}: neither a block device nor an image file")
    if str(target).startswith("/dev/") and not block:
        raise ProvisionError(f"{target}: not a block device")
    if image.exists() and os.path.samefile(image, target):
        raise ProvisionError(f"{target}: that is the image itself")
    table = _mounts(mounts)
    disk = _disk_of(str(target.resolve()), sys_block)
    names = _names(target, sys_block)
    for src, where in table:
        if where in SYSTEM_MOUNTS and (src in names or _disk_of(src, sys_block) in names | {disk}):
            raise ProvisionError(f"{target}: that is this machine's system disk ({src} is mounted on "
                                 f"{where}); pick the card's device (lsblk lists them)")
    for src, where in table:  # the target, or a partition of it (of its loop device, for a file)
        if src in names or _disk_of(src, sys_block) in (names | {disk} if block else names):
            raise ProvisionError(f"{target}: {src} is mounted on {where}: unmount it first "
                                 "(a desktop often mounts a fresh card)")
    with target.open("rb") as fh:
        capacity = fh.seek(0, os.SEEK_END)
    if capacity < size:
        raise ProvisionError(f"{target}: {capacity / 1e9:.2f} GB is smaller than the image "
                             f"({size / 1e9:.2f} GB); use a bigger card")
    return capacity


# --- writing and reading back -------------------------------------------------------------------------

def _open_target(target: Path) -> BinaryIO:
    # no O_TRUNC: an image-file target keeps its size, like a card; O_EXCL on a block device makes
    # the kernel refuse it while anything has it mounted (a race with an auto-mounter)
    flags = os.O_WRONLY | (os.O_EXCL if stat.S_ISBLK(target.stat().st_mode) else 0)
    return os.fdopen(os.open(target, flags), "wb", buffering=0)


def _bar(total: int, desc: str, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not show, leave=True)


def flash(image: Path, target: Path, *, progress: bool = True,
          open_target: Callable[[Path], BinaryIO] = _open_target,
          mounts: Path = Path("/proc/mounts"), sys_block: Path = Path("/sys/class/block")) -> Flashed:
    """Write ``image`` to ``target``, flush it, read it back and compare (see the module doc).
    ``open_target`` opens the card for writing (a test hands in a faulty card)."""
    if not image.is_file():
        raise ProvisionError(f"{image}: no such image file")
    size = image_size(image)
    if size == 0:
        raise ProvisionError(f"{image}: the image is empty")
    check_target(target, size, image=image, mounts=mounts, sys_block=sys_block)
    whole, blocks = hashlib.sha256(), []
    written = 0
    with _bar(size, "write ", progress) as bar, open_target(target) as out:
        try:
            for chunk in _chunks(image):
                whole.update(chunk)
                blocks.append(hashlib.sha256(chunk).digest())
                view = memoryview(chunk)
                while view:
                    n = out.write(view)
                    view = view[n:]
                written += len(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
            os.posix_fadvise(out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError as exc:
            raise FlashError(f"{target}: writing failed after {written / 1e6:.0f} MB: "
                             f"{exc.strerror or exc}") from None
    if written != size:
        raise ProvisionError(f"{image}: decompressed to {written} bytes, its index says {size}; "
                             "the image is damaged")
    _verify(target, size, whole.hexdigest(), blocks, progress)
    return Flashed(target, size, whole.hexdigest())


def _verify(target: Path, size: int, expected: str, blocks: list[bytes], progress: bool) -> None:
    back, first_bad, offset = hashlib.sha256(), None, 0
    with _bar(size, "verify", progress) as bar, target.open("rb", buffering=0) as fh:
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # read the card, not the cache
        for digest in blocks:
            chunk = fh.read(min(CHUNK, size - offset))
            back.update(chunk)
            if first_bad is None and hashlib.sha256(chunk).digest() != digest:
                first_bad = offset
            offset += len(chunk)
            bar.update(len(chunk))
    got = back.hexdigest()
    if got != expected or first_bad is not None:
        where = f" (first difference in the {CHUNK >> 20} MiB block at byte {first_bad})" \
            if first_bad is not None else ""
        raise FlashError(f"{target}: read-back sha256 {got[:16]}… differs from the image's "
                         f"{expected[:16]}…{where}: the card is faulty, fake or was removed")
