"""The options every host command shares (--host, --inventory, --config, --set, ...) and the
loading of inventory + provision.toml + flags into validated HostConfigs."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import click

HOST_HELP = "host, group or user@address[:port] (repeatable)"
PRECEDENCE = (
    "Settings precedence, lowest to highest: step defaults < provision.toml < [all:vars] < "
    "[group:vars] < host line < --set step.field=value."
)


def host_options(func):
    """--host, --inventory, --config, --set and the connection flags."""
    options = [
        click.option("--host", "-H", "hosts", multiple=True, required=True, help=HOST_HELP),
        click.option(
            "--inventory",
            "-i",
            type=click.Path(path_type=Path),
            default=None,
            help="inventory file [default: ./inventory.ini]",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(path_type=Path),
            default=None,
            help="settings file [default: ./provision.toml when present]",
        ),
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="STEP.FIELD=VALUE",
            help="override a setting (repeatable). " + PRECEDENCE,
        ),
        click.option(
            "--accept-new-host-key",
            is_flag=True,
            help="trust a host key seen for the first time (like ssh accept-new)",
        ),
        click.option(
            "--ask-sudo-pass",
            is_flag=True,
            help="prompt for the sudo password (or set PROVISION_SUDO_PASSWORD)",
        ),
        click.option("-v", "--verbose", count=True, help="-v: show commands; -vv: and output"),
        click.option(
            "--log-dir",
            type=click.Path(path_type=Path),
            default=Path(".provision/logs"),
            show_default=True,
            help="where the per-host transcripts go",
        ),
    ]

    @functools.wraps(func)
    def wrapper(**kwargs):
        target = Target(**{name: kwargs.pop(name) for name in Target.__dataclass_fields__})
        return func(target, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


@dataclass
class Target:
    """The hosts a command works on, and how: the values of the shared options."""

    hosts: tuple[str, ...]
    inventory: Path | None
    config_path: Path | None
    overrides: tuple[str, ...]
    accept_new_host_key: bool
    ask_sudo_pass: bool
    verbose: int
    log_dir: Path

    def configs(self, allow_reboot: bool | None = None):
        """Validated HostConfigs (no connection yet)."""
        return load_configs(
            self.hosts,
            self.inventory,
            self.config_path,
            self.overrides,
            self.accept_new_host_key,
            self.ask_sudo_pass,
            allow_reboot,
        )


def load_configs(
    hosts, inventory, config_path, overrides, accept_new_host_key, ask_sudo_pass, allow_reboot=None
):
    """Inventory + provision.toml + flags → validated HostConfigs (no connection yet)."""
    from provision import config
    from provision import inventory as inventory_mod

    if inventory is None:
        default = Path("inventory.ini")
        inv = inventory_mod.load(default) if default.exists() else inventory_mod.Inventory()
    else:
        inv = inventory_mod.load(inventory)
    toml = None
    if config_path is not None:
        toml = config.load_toml(config_path)
    elif Path("provision.toml").exists():
        toml = config.load_toml(Path("provision.toml"))
    password = os.environ.get("PROVISION_SUDO_PASSWORD") or None
    configs = config.load_hosts(
        inv,
        list(hosts),
        toml=toml,
        overrides=list(overrides),
        accept_new_host_key=accept_new_host_key,
        allow_reboot=allow_reboot,
        sudo_password=password,
    )
    if ask_sudo_pass:
        password = click.prompt("sudo password", hide_input=True, err=True)
        configs = [_with_password(c, password) for c in configs]
    return configs


def _with_password(hc, password: str):
    """The HostConfig with this sudo password on its connection."""
    import dataclasses

    from provision.shell import Secret

    conn = dataclasses.replace(hc.connection, sudo_password=Secret(password))
    return dataclasses.replace(hc, connection=conn)
