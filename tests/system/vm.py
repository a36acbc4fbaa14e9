"""One virtual machine booting a card image the way a Pi boots its card.

The kernel command line is read from ``cmdline.txt`` on the card's FAT partition at every boot
(as the Pi's bootloader does), so the first-boot hook ``camnode-provision image`` adds there runs,
and is gone once first boot removed it. The guest reaches the host's loopback as ``10.0.2.2``
(qemu user-mode networking); the host drives the guest through a root shell on its second serial
port (test instrumentation baked into the test image) and reads its console from a file.

``kill()`` is a power cut: qemu dies, the guest's page cache and any write still in its queues
are lost; what the guest had already written to the virtual card stays.

``VM(..., arch=AARCH64)`` boots an arm64 card in qemu-system-aarch64 (software emulation, a Pi 4's
CPU); its console is the virt machine's serial port, the control shell a virtio console.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.system import vmarm64
from tests.system.vmimage import AARCH64, BOOT_START, SECTOR, X86_64, Arch, kernel


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: install the Debian package qemu-system-x86")
    return path


@functools.cache
def accel() -> str:
    """``kvm`` when a probe boot of the kernel reaches its panic under KVM within 12 s, else ``tcg``
    (a KVM guest hung after the decompressor here: nested virtualisation)."""
    if os.environ.get("CAMNODE_VM_ACCEL") in ("kvm", "tcg"):
        return os.environ["CAMNODE_VM_ACCEL"]
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    vmlinuz, _, _ = kernel()
    try:
        r = subprocess.run([_tool("qemu-system-x86_64"), "-accel", "kvm", "-m", "256", "-nographic",
                            "-no-reboot", "-kernel", str(vmlinuz), "-append",
                            "console=ttyS0 root=/dev/null panic=-1"],
                           capture_output=True, timeout=12, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "tcg"
    return "kvm" if b"Kernel panic" in r.stdout else "tcg"


def cmdline_of(disk: Path) -> str:
    r = subprocess.run(["mtype", "-i", f"{disk}@@{BOOT_START * SECTOR}", "::/cmdline.txt"],
                       capture_output=True, text=True,
                       env={"MTOOLS_SKIP_CHECK": "1", "PATH": os.environ["PATH"]})
    if r.returncode != 0:
        raise RuntimeError(f"no cmdline.txt on {disk}: {r.stderr.strip()}")
    return r.stdout.strip()


def _machine(arch: Arch, console: Path, sock: Path) -> list[str]:
    """qemu and its machine, with the console into a file and the control shell on a socket."""
    ctl = f"socket,id=ctl,path={sock},server=on,wait=off"
    if arch is AARCH64:
        return [vmarm64.qemu(), *vmarm64.MACHINE, "-device", "virtio-serial-pci", "-chardev", ctl,
                "-device", "virtconsole,chardev=ctl", "-serial", f"file:{console}"]
    # numpy's x86_64 wheels need x86-64-v2 (SSE4.2, POPCNT): qemu's default CPU model has
    # neither, and the node died of an invalid opcode in numpy
    cpu = "host" if accel() == "kvm" else "max"
    return [_tool("qemu-system-x86_64"), "-accel", accel(), "-cpu", cpu,
            "-chardev", f"file,id=con,path={console}", "-serial", "chardev:con", "-chardev", ctl,
            "-serial", "chardev:ctl"]


class VM:
    def __init__(self, disk: Path, work: Path, *, memory_mb: int = 1024, arch: Arch = X86_64) -> None:
        self.disk, self.work, self.memory_mb, self.arch = disk, work, memory_mb, arch
        self.work.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.boots = 0
        self.console = work / "console-0.log"
        self._ctl: socket.socket | None = None
        self._seq = 0

    # --- life ---------------------------------------------------------------------------------------
    def start(self) -> VM:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        vmlinuz, initrd, _ = kernel(self.arch)
        self.boots += 1
        self.console = self.work / f"console-{self.boots}.log"
        sock = self.work / "ctl.sock"
        sock.unlink(missing_ok=True)
        self._ctl = None
        cmd = [*_machine(self.arch, self.console, sock), "-m", str(self.memory_mb), "-smp", "1",
               "-nodefaults", "-display", "none", "-no-reboot",
               "-kernel", str(vmlinuz), "-initrd", str(initrd),
               "-append", f"{cmdline_of(self.disk)} panic=-1",
               # writes the guest submitted reach the card file even when qemu is killed
               "-drive", f"file={self.disk},format=raw,if=virtio,cache=unsafe",
               "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
               "-device", "virtio-rng-pci"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=(self.work / f"qemu-{self.boots}.err").open("wb"),
                                     start_new_session=True)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float) -> int:
        """The guest powered off or rebooted (``-no-reboot``: qemu exits)."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the VM did not stop within {timeout:.0f} s; console:\n"
                                 + self.tail()) from None

    def kill(self) -> None:
        """Power cut."""
        if self.running():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None

    def tail(self, n: int = 60) -> str:
        try:
            lines = self.console.read_text(errors="replace").splitlines()
        except OSError:
            return "(no console)"
        return "\n".join(lines[-n:])

    # --- the control shell -----------------------------------------------------------------------------
    def _connect(self, timeout: float) -> socket.socket:
        if self._ctl is None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(str(self.work / "ctl.sock"))
                    break
                except OSError:
                    s.close()
                    if time.monotonic() > deadline or not self.running():
                        raise AssertionError("no control socket; console:\n" + self.tail()) from None
                    time.sleep(0.2)
            self._ctl = s
        return self._ctl

    def sh(self, command: str, timeout: float = 120) -> tuple[int, str]:
        """Run a shell command in the guest as root; (exit status, output)."""
        s = self._connect(timeout)
        self._seq += 1
        beg, end = f"@@BEG{self._seq}@@", f"@@END{self._seq}@@"
        # the markers are printed split in two so that the tty's echo of the line never matches them
        line = (f"stty -echo 2>/dev/null; echo \"{beg[:5]}\"\"{beg[5:]}\"; ( {command} ) 2>&1; "
                f"echo \"{end[:5]}\"\"{end[5:]}\" $?\n")
        s.sendall(line.encode())
        buf = b""
        deadline = time.monotonic() + timeout
        s.settimeout(1.0)
        rx = re.compile(re.escape(beg).encode() + rb"\r?\n(.*?)" + re.escape(end).encode() + rb" (\d+)", re.S)
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                chunk = b""
                if not self.running():
                    break
            buf += chunk
            m = rx.search(buf)
            if m:
                out = m.group(1).decode(errors="replace").replace("\r\n", "\n")
                return int(m.group(2)), out.strip()
        raise AssertionError(f"guest command {command!r} did not finish in {timeout:.0f} s; got "
                             f"{buf[-500:]!r}; console:\n{self.tail()}")

    def wait_ready(self, timeout: float) -> None:
        """The control shell answers (multi-user.target reached)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                code, _ = self.sh("true", timeout=5.0)  # lost while nothing listens on ttyS1 yet
                if code == 0:
                    return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
