"""Merge settings for each host, with where every value came from.

Precedence, lowest to highest: the step's defaults < provision.toml < [all:vars] <
[group:vars] (a child group beats its parent; two unrelated groups that disagree are an
error) < the host's line < --set step.field=value. Values are coerced to the field's type
and validated here: a bad value is a ConfigError naming file:line, before any connection.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision import rules
from provision import settings as settings_mod
from provision.errors import ConfigError
from provision.inventory import Inventory, Value, parse_ad_hoc, unknown_host_error
from provision.remote import Connection
from provision.shell import Secret
from provision.steps import STEPS


def setting_groups() -> tuple:
    """Every settings prefix: the steps, then commands with settings (`doctor.psu_watts`)."""
    from provision import doctor

    return (*STEPS, doctor.SETTINGS)


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
ANSIBLE_ONLY: dict[str, str] = {
    "ansible_become_pass": "the sudo password is never kept in the inventory: pass "
    "--ask-sudo-pass, or set PROVISION_SUDO_PASSWORD in the environment",
    "ansible_become_password": "the sudo password is never kept in the inventory: pass "
    "--ask-sudo-pass, or set PROVISION_SUDO_PASSWORD in the environment",
    "ansible_sudo_pass": "the sudo password is never kept in the inventory: pass "
    "--ask-sudo-pass, or set PROVISION_SUDO_PASSWORD in the environment",
    "ansible_password": "provision logs in with a key, never a password: set "
    "ansible_ssh_private_key_file (ssh-keygen -t ed25519; ssh-copy-id)",
    "ansible_ssh_pass": "provision logs in with a key, never a password: set "
    "ansible_ssh_private_key_file (ssh-keygen -t ed25519; ssh-copy-id)",
    "ansible_become": "not needed: provision runs commands with sudo whenever the user is not "
    "root; remove it",
    "ansible_become_user": "not supported: provision becomes root with sudo; remove it",
    "ansible_become_method": "not supported: provision always uses sudo; remove it",
    "ansible_python_interpreter": "not needed: provision finds python on the host; remove it",
    "ansible_ssh_common_args": "not supported: use ~/.ssh/config-free settings such as "
    "ansible_port and ansible_ssh_private_key_file",
}
ADDR_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
LABEL_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


@dataclass(frozen=True)
class HostConfig:
    """Everything needed to provision one host."""

    name: str
    connection: Connection
    settings: dict[str, Any]  # step key -> that step's Settings instance
    sources: dict[str, str]  # "step.field" or host var -> where the value came from
    allow_reboot: bool = True
    reboot_timeout_s: int = 900
    mac: str | None = None  # wake-on-LAN address (provision_mac)


def load_toml(path: Path) -> dict[str, dict[str, Value]]:
    """provision.toml: one table per step, the same keys as the inventory's step.field."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) is not TOML text.
        text = path.read_text(encoding="utf-8-sig")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(
            f"{path} not found", "fix the path given to --config", where="--config"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read {path}: {exc}", "save the file as UTF-8 text", where=str(path)
        ) from None
    except tomllib.TOMLDecodeError as exc:
        # Labelled with the file itself: it may be ./provision.toml, read without --config.
        line = getattr(exc, "lineno", None) or _decode_line(str(exc))
        raise ConfigError(
            f"{exc}", "fix the TOML syntax (https://toml.io)", where=f"{path}:{line}"
        ) from None
    lines = text.splitlines()
    result: dict[str, dict[str, Value]] = {}
    for table, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(
                f"top-level key '{table}' is not a [step] table",
                f"put it under its step's table, e.g. [base] then {table} = ...",
                where=f"{path}:{_line(lines, table)}",
            )
        for key, value in values.items():
            where = f"{path}:{_line(lines, key, after=f'[{table}]')}"
            result.setdefault(table, {})[key] = Value(value, where)  # type: ignore[arg-type]
    return result


def _decode_line(message: str) -> int:
    m = re.search(r"line (\d+)", message)
    return int(m[1]) if m else 1


def _line(lines: list[str], key: str, after: str = "") -> int:
    start = 0
    if after:
        start = next((i for i, x in enumerate(lines) if x.strip() == after), 0)
    for i in range(start, len(lines)):
        if re.match(rf"^\s*\[?{re.escape(key)}\]?\s*(=|$)", lines[i]):
            return i + 1
    return start + 1


def parse_set(values: list[str]) -> dict[str, Value]:
    """--set step.field=value flags."""
    result = {}
    for item in values:
        if "=" not in item:
            raise ConfigError(
                f"--set {item!r} is not step.field=value",
                "e.g. --set driver.branch=580 (`provision config` lists the settings)",
                where="--set",
            )
        key, value = item.split("=", 1)
        result[key.strip()] = Value(value, f"--set {key.strip()}")
    return result


def group_values(inv: Inventory, host: str) -> dict[str, Value]:
    """Vars from the host's groups; a child group wins over its parents; others must agree."""
    groups = inv.groups_of(host)
    merged: dict[str, Value] = {}
    for key in sorted({k for g in groups for k in inv.groups[g].vars}):
        setters = [g for g in groups if key in inv.groups[g].vars]
        # Drop groups that are an ancestor of another setter: the more specific one wins.
        specific = [g for g in setters if not any(g in inv.ancestors(o) for o in setters)]
        first = inv.groups[specific[0]].vars[key]
        for other_group in specific[1:]:
            other = inv.groups[other_group].vars[key]
            if other.text != first.text:
                raise ConfigError(
                    f"host '{host}' gets '{key}' = {first.text!r} from group '{specific[0]}' "
                    f"({first.where}) and {other.text!r} from group '{other_group}' "
                    f"({other.where})",
                    "set it once: on the host line, or in one group",
                    where=other.where,
                )
        merged[key] = first
    return merged


def _step_for(key: str, where: str):
    step_key, _, field_name = key.partition(".")
    by_key = {s.key: s for s in setting_groups()}
    step = by_key.get(step_key.replace("-", "_"))
    if step is None:
        close = difflib.get_close_matches(step_key, list(by_key), n=1)
        raise ConfigError(
            f"unknown step '{step_key}' in '{key}'",
            (f"did you mean '{close[0]}.{field_name}'? " if close else "")
            + f"steps: {', '.join(by_key)}",
            where=where,
        )
    return step, field_name


def build_settings(layers: list[dict[str, Value]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Apply layers (lowest first) of step.field values onto the steps' defaults."""
    chosen: dict[str, Value] = {}
    for layer in layers:
        for key, value in layer.items():
            if "." in key:
                chosen[key] = value
    per_step: dict[str, dict[str, Any]] = {s.key: {} for s in setting_groups()}
    sources: dict[str, str] = {}
    for key, value in chosen.items():
        step, field_name = _step_for(key, value.where)
        types = settings_mod.field_types(step.settings)
        if field_name not in types:
            close = difflib.get_close_matches(field_name, list(types), n=1)
            raise ConfigError(
                f"unknown setting '{key}'",
                (f"did you mean '{step.key}.{close[0]}'? " if close else "")
                + f"`provision config` lists the settings of {step.name}",
                where=value.where,
            )
        fld = _field(step.settings, field_name)
        try:
            coerced = settings_mod.coerce(value.text, types[field_name])
        except ValueError as exc:
            # The type alone says little: name the valid form with an example.
            example = settings_mod.example(fld, types[field_name])
            message = f"{exc}; e.g. {key}={example}" if example else str(exc)
            raise _setting_error(key, message, fld, value.where) from None
        try:
            check = fld.metadata.get("check")
            if check:
                check(coerced)
        except ValueError as exc:
            raise _setting_error(key, str(exc), fld, value.where) from None
        per_step[step.key][field_name] = coerced
        sources[key] = value.where
    result = {}
    for step in setting_groups():
        for f in dataclasses.fields(step.settings):
            sources.setdefault(f"{step.key}.{f.name}", "default")
        settings = step.settings(**per_step[step.key])
        # Rules between fields (a gateway inside the subnet, say): the error points at the
        # place that set the field it names.
        for field_name, message in getattr(settings, "problems", lambda: [])():
            key = f"{step.key}.{field_name}"
            fld = _field(step.settings, field_name)
            raise _setting_error(key, message, fld, sources[key])
        result[step.key] = settings
    rules.check_between(result, sources)
    return result, sources


def _setting_error(key: str, message: str, fld: dataclasses.Field, where: str) -> ConfigError:
    """A refused setting: the key once (a --set location already names it), and its help."""
    if where != f"--set {key}":
        message = f"{key}: {message}"
    help_text = fld.metadata.get("help") or ""
    hint = f"{key}: {help_text}" if help_text else "`provision config` lists the settings"
    return ConfigError(message, hint, where=where)


def _field(cls: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


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
    if "provision_mac" in values:
        from provision.wol import MAC_RE

        if not MAC_RE.match(values["provision_mac"]):
            fail("provision_mac", f"{values['provision_mac']!r} is not a MAC address",
                 "write it as aa:bb:cc:dd:ee:ff")  # fmt: skip
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


def load_hosts(
    inventory: Inventory,
    patterns: list[str],
    *,
    toml: dict[str, dict[str, Value]] | None = None,
    overrides: list[str] = (),
    accept_new_host_key: bool = False,
    allow_reboot: bool | None = None,
    sudo_password: str | None = None,
) -> list[HostConfig]:
    """HostConfigs for the --host patterns, fully validated."""
    if not patterns:
        raise ConfigError("no host given", "pass --host NAME, a group, or user@address", "--host")
    toml_layer = {f"{t}.{k}": v for t, kv in (toml or {}).items() for k, v in kv.items()}
    set_layer = parse_set(list(overrides))
    for key, value in set_layer.items():
        if "." not in key:
            raise ConfigError(
                "only step.field=value can be set",
                f"put {key} on the host's line in the inventory, or give --host user@address:port",
                where=value.where,
            )
    names: list[str] = []
    ad_hoc: dict[str, dict[str, Value]] = {}
    for pattern in patterns:
        if pattern in inventory.hosts or pattern in inventory.groups or pattern == "all":
            names += [n for n in inventory.select([pattern]) if n not in names]
            continue
        parsed = parse_ad_hoc(pattern)
        if parsed is None:
            raise unknown_host_error(pattern, inventory)
        user, addr, port = parsed
        where = f"--host {pattern}"
        ad_hoc[pattern] = {
            "ansible_host": Value(addr, where),
            "ansible_user": Value(user, where),
            "ansible_port": Value(str(port), where),
        }
        names.append(pattern)
    configs = []
    for name in names:
        if name in ad_hoc:
            layers = [toml_layer, inventory.all_vars, ad_hoc[name], set_layer]
        else:
            layers = [
                toml_layer,
                inventory.all_vars,
                group_values(inventory, name),
                inventory.hosts[name].vars,
                set_layer,
            ]
        host_where = inventory.hosts[name].where if name in inventory.hosts else f"--host {name}"
        hv, hv_sources = host_vars(layers, name, host_where)
        step_settings, sources = build_settings(layers)
        sources.update(hv_sources)
        secret = Secret(sudo_password) if sudo_password else None
        connection = Connection(
            host=name,
            addr=hv.get("ansible_host", name),
            port=hv.get("ansible_port", 22),
            user=hv.get("ansible_user"),
            key_file=hv.get("ansible_ssh_private_key_file"),
            local=hv.get("ansible_connection") == "local",
            known_hosts=hv.get("provision_known_hosts"),
            accept_new_host_key=accept_new_host_key
            or hv.get("provision_accept_new_host_key", False),
            connect_timeout_s=hv.get("provision_connect_timeout_s", 15),
            sudo_password=secret,
        )
        configs.append(
            HostConfig(
                name=name,
                connection=connection,
                settings=step_settings,
                sources=sources,
                allow_reboot=hv.get("provision_allow_reboot", True)
                if allow_reboot is None
                else allow_reboot,
                reboot_timeout_s=hv.get("provision_reboot_timeout_s", 900),
                mac=hv.get("provision_mac"),
            )
        )
    return configs
