"""The provisioning tool's errors and their exit codes."""

from __future__ import annotations


class ProvisionError(RuntimeError):
    """Something the installer must fix (bad name, missing tool, unusable file): exit 2."""

    exit_code = 2


class Conflict(ProvisionError):
    """The request collides with the ward as it is (a name taken, a changed node, a retired
    name): nothing was changed; exit 3."""

    exit_code = 3


class ToolError(ProvisionError):
    """A tool it needs failed or is missing (mosquitto_passwd, mtools): exit 1."""

    exit_code = 1
