"""Values rendered into files on the host, made safe for each file's format: one place per format.

Each function returns the text to put in the file, escaped for that format where the format
has an escape, and raises FormatError (a ValueError) where it has none (a newline in an sshd
value). The templates use them as Jinja filters (templates.py registers them by name), and
config.py runs the same functions on the settings that reach those files, so a value the
file cannot hold is refused with file:line before any connection, not on the host.
"""

from __future__ import annotations

import json
import re

# Control characters other than tab; no line-based format keeps them as data.
CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class FormatError(ValueError):
    """A value that the target file format cannot hold."""


def _plain(value: object, what: str) -> str:
    text = str(value)
    if CONTROL_RE.search(text):
        raise FormatError(f"{text!r} contains a newline or control character ({what})")
    return text


# --- systemd unit files (systemd.unit(5), systemd.service(5) "Command lines") ----------------


def systemd_path(value: object) -> str:
    """A path for a unit setting (WorkingDirectory=, Description=): `%` doubled (specifiers);
    backslashes, control characters and surrounding whitespace refused."""
    text = _plain(value, "systemd unit")
    if "\\" in text:
        raise FormatError(f"{text!r} contains a backslash, which systemd reads as an escape")
    if text != text.strip():
        raise FormatError(f"{text!r} starts or ends with whitespace, which systemd drops")
    return text.replace("%", "%%")


def systemd_exec(value: object) -> str:
    """The program of ExecStart= (left unquoted, it is followed by its arguments): a path
    without whitespace; `%` and `$` doubled."""
    text = systemd_path(value)
    if any(c.isspace() for c in text):
        raise FormatError(f"{text!r} contains whitespace (the program of a systemd command line)")
    return text.replace("$", "$$")


def systemd_arg(value: object) -> str:
    """One word of ExecStart=: double-quoted, with `\\` and `"` escaped, `%` and `$` doubled
    (specifiers and environment variables), so the service gets exactly this argument."""
    text = _plain(value, "systemd command line")
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("%", "%%").replace("$", "$$") + '"'


# --- YAML (netplan, .condarc) ----------------------------------------------------------------


def yaml_str(value: object) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML): no value is read as a
    number, a boolean, a list or a comment."""
    return json.dumps(_plain(value, "YAML"), ensure_ascii=False)


# --- sshd_config(5) and similar "Keyword value" files -----------------------------------------


def sshd_value(value: object) -> str:
    """A single-word sshd_config value: no whitespace, quotes, `#` or control characters."""
    text = _plain(value, "sshd_config")
    if not text or re.search(r"[\s\"'#]", text):
        raise FormatError(f"{text!r} is not one word without quotes or '#' (sshd_config)")
    return text


# --- INI-style files (timesyncd.conf, wg0.conf, systemd .link, apt deb822 fields) ------------


def ini_value(value: object) -> str:
    """A `Key=value` value: one line, no surrounding whitespace (it would be dropped)."""
    text = _plain(value, "INI file")
    if text != text.strip():
        raise FormatError(f"{text!r} starts or ends with whitespace, which the file drops")
    return text


FILTERS = {
    "systemd_path": systemd_path,
    "systemd_exec": systemd_exec,
    "systemd_arg": systemd_arg,
    "yaml_str": yaml_str,
    "sshd_value": sshd_value,
    "ini_value": ini_value,
}
