"""Merge settings for each host, with where every value came from.

Precedence, lowest to highest: the step's defaults < provision.toml < [all:vars] <
[group:vars] (a child group beats its parent; two unrelated groups that disagree are an
error) < the host's line < --set step.field=value. Each step.field value is coerced to its
field's type (settings.coerce) and checked here, the connection variables in hostvars: a bad
value is a ConfigError naming file:line, before any connection. The result is one HostConfig
per host (hostconfig.py).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import sys
from pathlib import Path
from typing import Any

from provision import rules
from provision import settings as settings_mod
from provision.connection import Connection
from provision.errors import ConfigError
from provision.hostconfig import HostConfig

# The host variables' names and patterns, kept importable from config:
from provision.hostvars import ADDR_RE as ADDR_RE
from provision.hostvars import ANSIBLE_ONLY as ANSIBLE_ONLY
from provision.hostvars import HOST_EXAMPLES as HOST_EXAMPLES
from provision.hostvars import HOST_VARS as HOST_VARS
from provision.hostvars import LABEL_RE as LABEL_RE
from provision.hostvars import host_vars
from provision.inventory import Inventory, Value, parse_ad_hoc, unknown_host_error
from provision.shell import Secret
from provision.steps import STEPS


def setting_groups() -> tuple:
    """Every settings prefix: the steps, then commands with settings (`doctor.psu_watts`)."""
    from provision import doctor

    return (*STEPS, doctor.SETTINGS)


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


def load_hosts(
    inventory: Inventory,
    patterns: list[str],
    *,
    toml: dict[str, dict[str, Value]] | None = None,
    overrides: list[str] = (),
    accept_new_host_key: bool = False,
    allow_reboot: bool | None = None,
    sudo_password: str | None = None,
    relays: bool = True,
) -> list[HostConfig]:
    """HostConfigs for the --host patterns, fully validated; with `relays`, a box whose
    expose.relay names an inventory host carries that host's HostConfig (provision.relay)."""
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
    if relays:
        from provision import relay

        def lookup(name: str) -> HostConfig | None:
            if name not in inventory.hosts:
                return None
            return load_hosts(inventory, [name], toml=toml, overrides=overrides, relays=False)[0]

        configs = relay.attach(configs, lookup)
        from provision import group

        def members(names: list[str]) -> list[HostConfig]:
            return load_hosts(inventory, names, toml=toml, overrides=overrides, relays=False)

        configs = group.attach(configs, members, list(inventory.hosts))
    return configs
