"""Merge settings for each host, with where every value came from.

Precedence, lowest to highest: the step's defaults < provision.toml < [all:vars] <
[group:vars] (a child group beats its parent; two unrelated groups that disagree are an
error) < the host's line < --set step.field=value. Values are coerced to the field's type
and validated here: a bad value is a ConfigError naming file:line, before any connection.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
ADDR_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")


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
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path} not found", where="--config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}", "fix the TOML syntax", where="--config") from None
    lines = text.splitlines()
    result: dict[str, dict[str, Value]] = {}
    for table, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(
                f"top-level key '{table}' is not a [step] table",
                where=f"{path}:{_line(lines, table)}",
            )
        for key, value in values.items():
            where = f"{path}:{_line(lines, key, after=f'[{table}]')}"
            result.setdefault(table, {})[key] = Value(value, where)  # type: ignore[arg-type]
    return result


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
            raise ConfigError(f"--set {item!r} is not step.field=value", where="--set")
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
        try:
            coerced = settings_mod.coerce(value.text, types[field_name])
            check = _field(step.settings, field_name).metadata.get("check")
            if check:
                check(coerced)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}", where=value.where) from None
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
            raise ConfigError(f"{key}: {message}", where=sources[key])
        result[step.key] = settings
    return result, sources


def _field(cls: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def host_vars(layers: list[dict[str, Value]], host: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Connection/run variables (no dot in the key), coerced and checked."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer in layers:
        for key, value in layer.items():
            if "." in key:
                continue
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
                raise ConfigError(f"{key}: {exc}", where=value.where) from None
            sources[key] = value.where
    _check_host_vars(values, sources, host)
    return values, sources


def _check_host_vars(values: dict[str, Any], sources: dict[str, str], host: str) -> None:
    def fail(key: str, message: str, hint: str = "") -> None:
        raise ConfigError(f"{key}: {message}", hint, where=sources.get(key, host))

    addr = values.get("ansible_host", host)
    if not ADDR_RE.match(addr) or addr.startswith("-"):
        fail("ansible_host", f"{addr!r} is not a host name or IP address")
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
            path = Path(os.path.expanduser(values[key]))
            base = Path(sources[key].rsplit(":", 1)[0]).parent if ":" in sources[key] else Path()
            if not path.is_absolute():
                path = base / path
            values[key] = str(path)
            if key == "ansible_ssh_private_key_file" and not path.is_file():
                fail(
                    key,
                    f"key file {path} not found",
                    "fix the path, or create the key with ssh-keygen -t ed25519",
                )
    if "provision_mac" in values:
        from provision.wol import MAC_RE

        if not MAC_RE.match(values["provision_mac"]):
            fail("provision_mac", f"{values['provision_mac']!r} is not a MAC address",
                 "write it as aa:bb:cc:dd:ee:ff")  # fmt: skip
    for key in ("provision_reboot_timeout_s", "provision_connect_timeout_s"):
        if key in values and values[key] <= 0:
            fail(key, f"{values[key]} must be greater than 0")


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
            raise ConfigError(f"--set {key}: only step.field=value can be set", where=value.where)
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
        hv, hv_sources = host_vars(layers, name)
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
