"""Connection and run variables of a host (ansible_host, provision_allow_reboot...), checked.

The variables without a dot in an inventory line or group: coerced to their type and checked
here, pointing at the file:line that set them, so a typo in an address, port, user or key path
is a ConfigError before any connection is tried (and before a DNS lookup of a name that cannot
be one). Ansible variables that provision deliberately has no equivalent for are refused with
what to do instead, never silently ignored.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from pathlib import Path
from typing import Any

from provision import settings as settings_mod
from provision.errors import ConfigError
from provision.inventory import Value
from provision.wol import MAC_RE

# Connection and run variables a host or group may set, with their types.
HOST_VARS: dict[str, Any] = {
    "ansible_host": str,
    "ansible_port": int,
    "ansible_user": str,
    "ansible_ssh_private_key_file": str,
    "ansible_connection": str,
    "provision_known_hosts": str,
    "provision_accept_new_host_key": bool,
    "provision_allow_reboot": bool,
    "provision_reboot_timeout_s": int,
    "provision_connect_timeout_s": int,
    "provision_mac": str,  # for `provision wake`
}
# A valid example of each, for the hint of a value that does not convert or check.
HOST_EXAMPLES: dict[str, str] = {
    "ansible_host": "192.168.1.50",
    "ansible_port": "22",
    "ansible_user": "ubuntu",
    "ansible_ssh_private_key_file": "~/.ssh/id_ed25519",
    "ansible_connection": "ssh",
    "provision_known_hosts": "~/.ssh/known_hosts",
    "provision_accept_new_host_key": "true",
    "provision_allow_reboot": "false",
    "provision_reboot_timeout_s": "900",
    "provision_connect_timeout_s": "15",
    "provision_mac": "aa:bb:cc:dd:ee:ff",
}
# Ansible variables people carry over that provision deliberately has no equivalent for.
_NO_SUDO_PASSWORD = (
    "the sudo password is never kept in the inventory: pass --ask-sudo-pass, or set "
    "PROVISION_SUDO_PASSWORD in the environment"
)
_KEY_NOT_PASSWORD = (
    "provision logs in with a key, never a password: set ansible_ssh_private_key_file "
    "(ssh-keygen -t ed25519; ssh-copy-id)"
)
ANSIBLE_ONLY: dict[str, str] = {
    "ansible_become_pass": _NO_SUDO_PASSWORD,
    "ansible_become_password": _NO_SUDO_PASSWORD,
    "ansible_sudo_pass": _NO_SUDO_PASSWORD,
    "ansible_password": _KEY_NOT_PASSWORD,
    "ansible_ssh_pass": _KEY_NOT_PASSWORD,
    "ansible_become": "not needed: provision runs commands with sudo whenever the user is not "
    "root; remove it",
    "ansible_become_user": "not supported: provision becomes root with sudo; remove it",
    "ansible_become_method": "not supported: provision always uses sudo; remove it",
    "ansible_python_interpreter": "not needed: provision finds python on the host; remove it",
    "ansible_ssh_common_args": "not supported: use ~/.ssh/config-free settings such as "
    "ansible_port and ansible_ssh_private_key_file",
}
# The characters a host name or address may have at all; one dot-separated label of a name
# (1-63 characters, no '-' at either end, '_' allowed).
ADDR_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
LABEL_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def host_vars(
    layers: list[dict[str, Value]], host: str, host_where: str = ""
) -> tuple[dict[str, Any], dict[str, str]]:
    """Connection/run variables (no dot in the key), coerced and checked."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer in layers:
        for key, value in layer.items():
            if "." in key:
                continue
            if key in ANSIBLE_ONLY:
                raise ConfigError(
                    f"'{key}' is an Ansible variable provision does not use",
                    ANSIBLE_ONLY[key],
                    where=value.where,
                )
            if key not in HOST_VARS:
                close = difflib.get_close_matches(key, list(HOST_VARS), n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                if "_" not in key:
                    hint += "step settings are written step.field=value"
                else:
                    hint += "supported: " + ", ".join(HOST_VARS)
                raise ConfigError(f"unknown variable '{key}'", hint, where=value.where)
            try:
                values[key] = settings_mod.coerce(value.text, HOST_VARS[key])
            except ValueError as exc:
                raise ConfigError(
                    f"{key}: {exc}; e.g. {key}={HOST_EXAMPLES[key]}",
                    f"write it as {key}={HOST_EXAMPLES[key]}",
                    where=value.where,
                ) from None
            sources[key] = value.where
    _check_host_vars(values, sources, host, host_where or host)
    return values, sources


def _check_host_vars(
    values: dict[str, Any], sources: dict[str, str], host: str, host_where: str
) -> None:
    """Each value's own rules (address, port range, user name, key file, MAC, timeouts); a
    relative key path is read from the folder of the file that set it. The first problem
    raises."""

    def fail(key: str, message: str, hint: str = "") -> None:
        hint = hint or f"e.g. {key}={HOST_EXAMPLES[key]}"
        raise ConfigError(f"{key}: {message}", hint, where=sources.get(key, host_where))

    if "ansible_host" in values:
        values["ansible_host"] = _address(
            values["ansible_host"], lambda m, h: fail("ansible_host", m, h)
        )
    else:
        # The host's name is its address: the same rules, pointing at the host line.
        def fail_name(message: str, hint: str) -> None:
            raise ConfigError(
                f"host '{host}' (its name is its address): {message}",
                f"{hint}, or set ansible_host=ADDRESS on its line",
                where=host_where,
            )

        _address(host, fail_name)
    port = values.get("ansible_port", 22)
    if not 0 < port < 65536:
        fail("ansible_port", f"{port} is out of range 1-65535")
    user = values.get("ansible_user")
    if user is not None and not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", user):
        fail("ansible_user", f"{user!r} is not a user name")
    conn = values.get("ansible_connection", "ssh")
    if conn not in ("ssh", "paramiko", "smart", "local"):
        fail("ansible_connection", f"{conn!r} is not supported", "use ssh (default) or local")
    for key in ("ansible_ssh_private_key_file", "provision_known_hosts"):
        if key in values:
            if not values[key].strip():
                fail(key, "is empty")
            path = Path(os.path.expanduser(values[key]))
            base = Path(sources[key].rsplit(":", 1)[0]).parent if ":" in sources[key] else Path()
            if not path.is_absolute():
                path = base / path
            values[key] = str(path)
            if key == "ansible_ssh_private_key_file":
                _check_key_file(path, lambda m, h, k=key: fail(k, m, h))
    mac = values.get("provision_mac")
    if mac is not None and not MAC_RE.match(mac):
        fail("provision_mac", f"{mac!r} is not a MAC address", "write it as aa:bb:cc:dd:ee:ff")
    for key in ("provision_reboot_timeout_s", "provision_connect_timeout_s"):
        if key in values and values[key] <= 0:
            fail(key, f"{values[key]} must be greater than 0")


def _address(addr: str, fail) -> str:
    """A host name or IP address as written (brackets around IPv6 removed); refused before any
    DNS lookup when it can be no such thing. fail(message, hint) raises."""
    example = HOST_EXAMPLES["ansible_host"]
    if addr.startswith("[") and addr.endswith("]"):
        inner = addr[1:-1]
        try:
            if ipaddress.ip_address(inner).version == 6:
                return inner  # [::1] as in --host me@[::1]:22
        except ValueError:
            pass
        fail(f"{addr!r}: brackets are for an IPv6 address", "e.g. ansible_host=[::1] or ::1")
    if not addr or not ADDR_RE.match(addr) or addr.startswith("-"):
        fail(
            f"{addr!r} is not a host name or IP address",
            f"letters, digits, '.', '-' and ':' only, e.g. {example} or box.lan",
        )
    try:
        ipaddress.ip_address(addr)
        return addr
    except ValueError:
        pass
    if ":" in addr:
        fail(f"{addr!r} is not an IPv6 address", "e.g. fe80::1 or 2001:db8::5")
    labels = addr[:-1].split(".") if addr.endswith(".") else addr.split(".")
    # RFC 1123 2.1 / RFC 3696 2: a top-level label is never all digits, so a name made of
    # digits and dots is a mistyped IPv4 address (the resolver would read 10.1 as 10.0.0.1).
    if labels[-1].isdigit():
        fail(
            f"{addr!r} is not a valid IPv4 address (four numbers 0-255) and cannot be a host name",
            f"fix the address, e.g. {example}",
        )
    if len(addr) > 253 or not all(LABEL_RE.match(x) for x in labels):
        fail(
            f"{addr!r} is not a host name (labels of 1-63 letters, digits and '-')",
            f"e.g. {example} or box.lan",
        )
    return addr


def _check_key_file(path: Path, fail) -> None:
    """The private key exists, is a file, and is not readable by others (OpenSSH's rule)."""
    if path.is_dir():
        fail(
            f"{path} is a directory, not a key file",
            f"name the private key inside it, e.g. {path / 'id_ed25519'}",
        )
    if not path.is_file():
        fail(
            f"key file {path} not found",
            "fix the path, or create the key with ssh-keygen -t ed25519",
        )
    st = path.stat()
    # sshkey_perm_ok() in OpenSSH: a key of ours that group or others can read is refused.
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        fail(
            f"UNPROTECTED PRIVATE KEY FILE: {path} has mode {st.st_mode & 0o777:04o}, readable by "
            "others; OpenSSH refuses such a key",
            f"chmod 600 {path}",
        )
