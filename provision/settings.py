"""Helpers for the steps' Settings dataclasses: typed fields with validators, and coercion.

A step declares `Settings` with `setting(default, "help", check=...)`; config.py coerces
inventory text to each field's type and runs its check, so a bad value is refused with
file:line before any host is contacted.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import typing
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], None]  # raises ValueError with a message for people

TRUE = {"true", "yes", "on", "1"}
FALSE = {"false", "no", "off", "0"}


def setting(default: Any, help: str, check: Check | None = None) -> Any:
    """A Settings field with its help text and an optional validator."""
    meta = {"help": help, "check": check}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults")
    return dataclasses.field(default=default, metadata=meta)


def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of each field of a Settings dataclass."""
    return typing.get_type_hints(cls)


# Newlines and other control characters (tab allowed) are never part of a setting: refused for
# every field, so no value can add a line to a file or a command (a --set or TOML value could).
CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def coerce(text: str | Any, kind: Any) -> Any:
    """Turn inventory text (or a TOML value) into the field's type; ValueError if it cannot."""
    items = text if isinstance(text, (list, tuple)) else [text]
    if any(isinstance(x, str) and CONTROL_RE.search(x) for x in items):
        raise ValueError(f"{text!r} contains a newline or another control character")
    if kind is bool:
        if isinstance(text, bool):
            return text
        low = str(text).strip().lower()
        if low in TRUE:
            return True
        if low in FALSE:
            return False
        raise ValueError(f"{text!r} is not a boolean (use true or false)")
    if kind is int:
        if isinstance(text, bool):
            raise ValueError(f"{text!r} is not an integer")
        try:
            return int(str(text).strip())
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
    if kind is float:
        try:
            return float(str(text).strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if kind is str:
        if not isinstance(text, str):
            raise ValueError(f"{text!r} is not a string")
        return text
    if typing.get_origin(kind) is tuple:
        if isinstance(text, (list, tuple)):
            items = [str(x) for x in text]
        else:
            items = [s.strip() for s in str(text).split(",")] if str(text).strip() else []
        if any(not s for s in items):
            raise ValueError(f"{text!r} has an empty item (comma-separated list)")
        return tuple(items)
    raise TypeError(f"unsupported settings type {kind!r}")


EXAMPLE_RE = re.compile(r"\be\.g\. ([^\s,;)]+)")
TYPE_EXAMPLES = {bool: "true", int: "1", float: "1.5", str: "text"}


def example(fld: dataclasses.Field, kind: Any) -> str:
    """A valid value for a field, as written in the inventory: its help's "e.g.", else its
    default, else a value of its type."""
    found = EXAMPLE_RE.search(fld.metadata.get("help") or "")
    if found:
        return found[1].strip("'\"")
    default = fld.default
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, tuple) and default:
        return ",".join(str(x) for x in default)
    if default not in ("", 0, (), None, dataclasses.MISSING):
        return str(default)
    if typing.get_origin(kind) is tuple:
        return ""  # no honest example for an empty list of unknown items
    return TYPE_EXAMPLES.get(kind, "") if kind is not str else ""


# --- validators: each raises ValueError(message) -------------------------------------------

PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+)?$")
UNIX_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
IFACE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
URL_RE = re.compile(r"^(https?|file)://[^\s'\"`$\\;|&<>()]+$")


def each(check: Check) -> Check:
    """Apply a validator to every item of a tuple setting."""

    def run(values: Any) -> None:
        for value in values:
            check(value)

    return run


def package_name(value: str) -> None:
    """A Debian package name, optionally with :arch and =version."""
    if not PACKAGE_RE.match(value):
        raise ValueError(f"{value!r} is not a Debian package name")


def unix_name(value: str) -> None:
    """A user or group name."""
    if not UNIX_NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a valid user/group name (lowercase, digits, _ -)")


def url(value: str) -> None:
    """An http(s):// or file:// URL without shell metacharacters; empty means unset."""
    if value and not URL_RE.match(value):
        raise ValueError(f"{value!r} is not an http://, https:// or file:// URL")


def fingerprint(value: str) -> None:
    """An OpenPGP key's full fingerprint (v4: 40 hex digits, v6: 64); empty means unset."""
    if value and not re.fullmatch(r"[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64}", value):
        raise ValueError(f"{value!r} is not a key fingerprint (40 or 64 hex digits, no spaces)")


def absolute_path(value: str) -> None:
    """An absolute path without newlines or a leading dash."""
    if value and (not value.startswith("/") or "\n" in value or "\0" in value):
        raise ValueError(f"{value!r} is not an absolute path (e.g. /srv/data)")
    if "\\" in value:
        # Unit files, netplan and shell profiles each read a backslash as an escape.
        raise ValueError(f"{value!r} contains a backslash, which no config file keeps as is")


def hostname(value: str) -> None:
    """A DNS name or IP address (for NTP servers, mirrors and the like)."""
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    ok = all(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", x) for x in labels)
    if not value or not ok:
        raise ValueError(f"{value!r} is not a host name or IP address")


def ip_address(value: str) -> None:
    """An IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address (e.g. 10.0.0.5)") from None


def ip_interface(value: str) -> None:
    """An address with prefix, e.g. 192.168.1.10/24."""
    if "/" not in value:
        raise ValueError(f"{value!r} needs a prefix length, e.g. {value}/24")
    try:
        ipaddress.ip_interface(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an address/prefix: {exc}") from None


def interface_name(value: str) -> None:
    """A network interface name (at most 15 characters)."""
    if value and not IFACE_RE.match(value):
        raise ValueError(f"{value!r} is not a network interface name")


def one_of(*choices: str) -> Check:
    """The value must be one of the choices."""

    def run(value: str) -> None:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of: {', '.join(choices)}")

    return run


def positive(value: int) -> None:
    """A number greater than zero."""
    if value <= 0:
        raise ValueError(f"{value!r} must be greater than 0")
