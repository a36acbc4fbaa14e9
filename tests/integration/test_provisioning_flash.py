"""``camnode-provision flash`` on image-file targets: an .img.xz written verifies, a card that
loses writes is caught, and every refusal leaves the target untouched."""

from __future__ import annotations

import hashlib
import lzma
import os
from pathlib import Path

import pytest

from provisioning.cli import main
from provisioning.errors import ProvisionError
from provisioning.flash import CHUNK, FlashError, flash, xz_size

MiB = 1 << 20


def _image(tmp_path: Path, size: int = 9 * MiB + 123) -> tuple[Path, bytes]:
    data = os.urandom(size // 2) + bytes(size - size // 2)  # half noise, half zeros (compresses)
    img = tmp_path / "os.img"
    img.write_bytes(data)
    return img, data


def _xz(img: Path) -> Path:
    out = img.with_suffix(".img.xz")
    out.write_bytes(lzma.compress(img.read_bytes(), preset=0))
    return out


def _target(tmp_path: Path, size: int, name: str = "card.img") -> Path:
    t = tmp_path / name
    with t.open("wb") as fh:
        fh.truncate(size)
    return t


def _sum(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_xz_size_reads_the_index_of_one_and_of_concatenated_streams(tmp_path):
    one = tmp_path / "a.xz"
    one.write_bytes(lzma.compress(b"x" * 5_000_001))
    assert xz_size(one) == 5_000_001
    two = tmp_path / "b.xz"
    two.write_bytes(lzma.compress(b"a" * 1000) + b"\0" * 8 + lzma.compress(b"b" * 77))
    assert xz_size(two) == 1077


def test_an_xz_image_written_to_an_image_file_verifies(tmp_path, capsys):
    img, data = _image(tmp_path)
    card = _target(tmp_path, 16 * MiB)
    tail = os.urandom(1000)
    with card.open("r+b") as fh:  # what was on the card after the image stays (a card keeps its size)
        fh.seek(16 * MiB - 1000)
        fh.write(tail)
    assert main(["flash", str(_xz(img)), str(card)]) == 0
    out = capsys.readouterr()
    assert "wrote and verified" in out.out
    assert "verify" in out.err  # the progress bars go to stderr
    got = card.read_bytes()
    assert len(got) == 16 * MiB
    assert got[:len(data)] == data
    assert got[-1000:] == tail


def test_a_plain_img_written_returns_its_hash(tmp_path):
    img, data = _image(tmp_path, 3 * MiB)
    card = _target(tmp_path, 3 * MiB)
    done = flash(img, card, progress=False)
    assert done.size == len(data)
    assert done.sha256 == hashlib.sha256(data).hexdigest() == _sum(card)


class _LosesOneWrite:
    """A faulty card: takes every write but flips one byte of the third block (what a fake-capacity
    or failing card does silently)."""

    def __init__(self, path: Path):
        self.fh = path.open("r+b", buffering=0)
        self.pos = 0

    def write(self, b) -> int:
        b = bytearray(b)
        if self.pos <= 2 * CHUNK + 5 < self.pos + len(b):
            b[2 * CHUNK + 5 - self.pos] ^= 0xFF
        n = self.fh.write(b)
        self.pos += n
        return n

    def flush(self) -> None:
        self.fh.flush()

    def fileno(self) -> int:
        return self.fh.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()


def test_a_corrupted_write_is_caught_and_named(tmp_path):
    img, _ = _image(tmp_path)
    card = _target(tmp_path, 10 * MiB)
    with pytest.raises(FlashError, match=rf"differs .* block at byte {2 * CHUNK}\)"):
        flash(_xz(img), card, progress=False, open_target=_LosesOneWrite)


def test_a_card_changed_after_the_write_fails_the_cli_with_exit_1(tmp_path, capsys, monkeypatch):
    import provisioning.flash as fl

    img, _ = _image(tmp_path, 2 * MiB)
    card = _target(tmp_path, 2 * MiB)
    real = fl._verify

    def pulled_out(target, *args):  # the card is swapped between the write and the read-back
        target.write_bytes(bytes(2 * MiB))
        return real(target, *args)

    monkeypatch.setattr(fl, "_verify", pulled_out)
    assert main(["flash", "--quiet", str(img), str(card)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "read-back sha256" in err[0]


def _refused(argv: list[str], card: Path | None, capsys, match: str, code: int = 2) -> None:
    before = _sum(card) if card and card.exists() else None
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert match in err, err
    if card is not None and before is not None:
        assert _sum(card) == before  # nothing written


def test_refuses_a_target_smaller_than_the_image(tmp_path, capsys):
    img, _ = _image(tmp_path, 5 * MiB)
    card = _target(tmp_path, 5 * MiB - 512)
    _refused(["flash", str(_xz(img)), str(card)], card, capsys, "smaller than the image")


def test_refuses_to_write_without_an_explicit_target(tmp_path, capsys):
    img, _ = _image(tmp_path, MiB)
    with pytest.raises(SystemExit) as exc:
        main(["flash", str(img)])
    assert exc.value.code == 2
    assert "DEVICE" in capsys.readouterr().err
    missing = tmp_path / "typo.img"
    _refused(["flash", str(img), str(missing)], None, capsys, "no such file")
    assert not missing.exists()  # a typo does not create a file
    _refused(["flash", str(img), str(img)], img, capsys, "the image itself")


def test_refuses_a_missing_device_and_a_non_device_under_dev(tmp_path, capsys):
    img, _ = _image(tmp_path, MiB)
    _refused(["flash", str(img), "/dev/camnode-no-such-card"], None, capsys, "no such device")
    _refused(["flash", str(img), "/dev/null"], None, capsys, "neither a block device nor an image file")


def _table(tmp_path: Path, text: str) -> Path:
    t = tmp_path / "mounts"
    t.write_text(text)
    return t


def test_refuses_a_mounted_target(tmp_path):
    img, _ = _image(tmp_path, MiB)
    card = _target(tmp_path, 2 * MiB, "my card.img")
    before = _sum(card)
    esc = str(card).replace(" ", "\\040")  # how the kernel writes a space in /proc/mounts
    mounts = _table(tmp_path, f"proc /proc proc rw 0 0\n{esc} /media/pi/bootfs vfat rw 0 0\n")
    with pytest.raises(ProvisionError, match="mounted on /media/pi/bootfs: unmount it first"):
        flash(img, card, progress=False, mounts=mounts)
    # through a loop device backed by the file (how `mount -o loop` shows it)
    sysb = tmp_path / "sys"
    (sysb / "loop3" / "loop").mkdir(parents=True)
    (sysb / "loop3" / "loop" / "backing_file").write_text(f"{card}\n")
    mounts = _table(tmp_path, "/dev/loop3 /mnt vfat rw 0 0\n")
    with pytest.raises(ProvisionError, match="/dev/loop3 is mounted on /mnt"):
        flash(img, card, progress=False, mounts=mounts, sys_block=sysb)
    # a partition of that loop device (how a desktop mounts an image file's partitions)
    _loop_partition(sysb, "loop3", 1)
    mounts = _table(tmp_path, "/dev/loop3p1 /media/pi/bootfs vfat rw 0 0\n")
    with pytest.raises(ProvisionError, match="/dev/loop3p1 is mounted on /media/pi/bootfs"):
        flash(img, card, progress=False, mounts=mounts, sys_block=sysb)
    assert _sum(card) == before


def _loop_partition(sysb: Path, disk: str, n: int) -> None:
    """sysfs as the kernel lays out a partition: ``DISK/DISKpN/partition``, linked from the top."""
    part = sysb / disk / f"{disk}p{n}"
    part.mkdir(parents=True)
    (part / "partition").write_text(f"{n}\n")
    (sysb / part.name).symlink_to(part)


def test_refuses_the_system_disk_and_a_partition_of_it(tmp_path):
    img, _ = _image(tmp_path, MiB)
    card = _target(tmp_path, 2 * MiB)
    mounts = _table(tmp_path, f"{card} / ext4 rw 0 0\n")
    with pytest.raises(ProvisionError, match="this machine's system disk"):
        flash(img, card, progress=False, mounts=mounts)
    # a disk whose second partition holds / (sysfs: sda2 is a partition of sda)
    sysb = tmp_path / "sys"
    (sysb / "sda" / "sda2").mkdir(parents=True)
    (sysb / "sda" / "sda2" / "partition").write_text("2\n")
    (sysb / "sda2").symlink_to(sysb / "sda" / "sda2")
    from provisioning.flash import _disk_of

    assert _disk_of("/dev/sda2", sysb) == "/dev/sda"
    assert _disk_of("/dev/sdb", sysb) == "/dev/sdb"
    assert _disk_of(str(card), sysb) == str(card)
    # flash itself: a target whose partition holds / (an image file attached as loop7, its
    # second partition the root of this machine)
    (sysb / "loop7" / "loop").mkdir(parents=True)
    (sysb / "loop7" / "loop" / "backing_file").write_text(f"{card}\n")
    _loop_partition(sysb, "loop7", 2)
    before = _sum(card)
    with pytest.raises(ProvisionError, match=r"this machine's system disk \(/dev/loop7p2 is mounted on /\)"):
        flash(img, card, progress=False, mounts=_table(tmp_path, "/dev/loop7p2 / ext4 rw 0 0\n"),
              sys_block=sysb)
    assert _sum(card) == before


def test_a_damaged_xz_image_fails_with_a_reason(tmp_path, capsys):
    img, _ = _image(tmp_path, MiB)
    xz = _xz(img)
    raw = bytearray(xz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    xz.write_bytes(bytes(raw))
    card = _target(tmp_path, 2 * MiB)
    assert main(["flash", "--quiet", str(xz), str(card)]) == 2
    assert "damaged" in capsys.readouterr().err
    not_xz = tmp_path / "x.img.xz"
    not_xz.write_bytes(b"hello")
    _refused(["flash", str(not_xz), str(card)], card, capsys, "not a readable .xz image")


def test_wheel_platform_tags_per_board_cpu():
    from provisioning.wheels import platform_args

    arm = platform_args("3.11", 36)
    assert "manylinux_2_27_aarch64" in arm and not any("x86_64" in a for a in arm)
    pc = platform_args("3.11", 36, arch="x86_64")  # the system tests' VM, a PC-class node
    assert "manylinux_2_28_x86_64" in pc and not any("aarch64" in a for a in pc)
    with pytest.raises(ProvisionError, match="--arch riscv64"):
        platform_args(arch="riscv64")
