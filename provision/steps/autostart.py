"""autostart: a headless box that stays up and comes back by itself.

Manages: the default target (multi-user.target unless the desktop is kept), sleep, suspend,
hibernate and hybrid-sleep targets masked, logind ignoring the lid and idle
(`/etc/systemd/logind.conf.d/provision.conf`, restarts systemd-logind), the services the
user lists enabled and started, and wake-on-LAN on one NIC
(`/etc/systemd/network/50-provision-wol.link`, applied now with ethtool; refused inside a
container, whose NICs are the host's). What only the firmware can do (power on after a
power cut) is reported by verify as a manual item. Never reboots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provision import shell
from provision.changes import Change, Run
from provision.errors import ProvisionError, Skip
from provision.facts.reads import Read
from provision.resources import file_read, packages, service, service_read, template_file
from provision.settings import each, interface_name, setting
from provision.step import Context, Step
from provision.unitstate import enabled_state, not_enabled_message

SLEEP_TARGETS = ("sleep.target", "suspend.target", "hibernate.target", "hybrid-sleep.target")
LINK = "/etc/systemd/network/50-provision-wol.link"
LOGIND_CONF = "/etc/systemd/logind.conf.d/provision.conf"


def unit_name(value: str) -> None:
    """A systemd unit name (no paths, no shell syntax)."""
    if not re.fullmatch(r"[A-Za-z0-9@_.:\\-]+", value) or value.startswith("-"):
        raise ValueError(f"{value!r} is not a systemd unit name")


@dataclass(frozen=True)
class Settings:
    """Settings of the autostart step (inventory keys `autostart.<field>`)."""

    headless: bool = setting(True, "boot to multi-user.target (no desktop)")
    mask_sleep: bool = setting(True, "mask sleep/suspend/hibernate so the box never sleeps")
    ignore_lid: bool = setting(True, "logind ignores the lid, suspend keys and idle")
    services: tuple[str, ...] = setting((), "units to enable at boot and start", each(unit_name))
    wake_on_lan_interface: str = setting("", "NIC to enable wake-on-LAN on", interface_name)


def targets_read(s: Settings) -> Read:
    """The default target, then `UNIT STATE` for each sleep target we mask."""
    units = list(SLEEP_TARGETS) if s.mask_sleep else []
    command = shell.and_(
        "systemctl get-default",
        *(
            f"echo {shell.cmd(u)} $(systemctl is-enabled -- {shell.cmd(u)} 2>/dev/null)"
            for u in units
        ),
    )
    return Read(command + " ; true")


def ethtool_read(name: str) -> Read:
    """The NIC's ethtool settings (its Wake-on line)."""
    return Read(shell.cmd("ethtool", "--", name), sudo=True)


def reads(ctx: Context) -> list[Read]:
    """Every read autostart's check makes, from the facts and settings alone."""
    s: Settings = ctx.settings(Settings)
    f = ctx.facts
    wanted = [targets_read(s)]
    if s.ignore_lid:
        wanted.append(file_read(ctx, LOGIND_CONF))
    wanted += [service_read(unit) for unit in s.services]
    name = s.wake_on_lan_interface
    # Only where wol_changes gets that far: not in a container, and the NIC is there.
    if name and not f.in_container and any(n.name == name for n in f.nics):
        wanted += [file_read(ctx, LINK), ethtool_read(name)]
    return wanted


def check(ctx: Context) -> list[Change]:
    """What autostart would change on this host."""
    s: Settings = ctx.settings(Settings)
    units = list(SLEEP_TARGETS) if s.mask_sleep else []
    lines = ctx.read(targets_read(s).command).stdout.splitlines()
    changes: list[Change] = []
    if s.headless and lines and lines[0].strip() != "multi-user.target":
        changes.append(
            Change(
                f"boot to multi-user.target (was {lines[0].strip()})",
                (Run("systemctl set-default multi-user.target"),),
            )
        )
    states = dict(line.split(" ", 1) if " " in line else (line, "") for line in lines[1:])
    unmasked = [u for u in units if states.get(u, "").strip() != "masked"]
    if unmasked:
        changes.append(
            Change(
                f"mask {', '.join(unmasked)}",
                (Run(shell.cmd("systemctl", "mask", "--", *unmasked)),),
            )
        )
    if s.ignore_lid:
        changes += template_file(
            ctx,
            "autostart/logind.conf.j2",
            LOGIND_CONF,
            {},
            restart="systemd-logind",
        )
    for unit in s.services:
        changes += service(ctx, unit)
    if s.wake_on_lan_interface:
        changes += wol_changes(ctx, s)
    return changes


def wol_changes(ctx: Context, s: Settings) -> list[Change]:
    f = ctx.facts
    name = s.wake_on_lan_interface
    if f.in_container:
        raise ProvisionError(
            f"{ctx.host}: autostart.wake_on_lan_interface inside a container ({f.container})",
            "a container shares its NICs with the machine it runs on; set it on the real box",
        )
    nic = next((n for n in f.nics if n.name == name), None)
    if nic is None:
        raise ProvisionError(
            f"{ctx.host}: no network interface {name!r}",
            "interfaces found: " + ", ".join(n.name for n in f.nics if n.name != "lo"),
        )
    changes = packages(ctx, ["ethtool"])
    link = template_file(
        ctx,
        "autostart/wol.link.j2",
        LINK,
        {"interface": name, "mac": nic.mac},
        summary=f"wake-on-LAN on {name} at every boot (MAC {nic.mac})",
    )
    changes += link
    current = ctx.read(ethtool_read(name).command, sudo=True).stdout
    wol = next(
        (
            x.split(":", 1)[1].strip()
            for x in current.splitlines()
            if x.strip().startswith("Wake-on:")
        ),
        "",
    )
    if "g" not in wol:
        changes.append(
            Change(
                f"enable wake-on-LAN on {name} now (MAC {nic.mac})",
                (Run(shell.cmd("ethtool", "-s", name, "wol", "g")),),
            )
        )
    return changes


def verify_never_sleeps(host, s: Settings) -> None:
    """the box never sleeps: sleep targets masked, logind ignores lid and idle"""
    if not s.mask_sleep:
        raise Skip("autostart.mask_sleep is off")
    for unit in SLEEP_TARGETS:
        state = host.run(f"systemctl is-enabled {unit}").stdout.strip()
        assert state == "masked", f"{unit} is {state}, not masked"
    if s.ignore_lid:
        cfg = host.check_output("systemd-analyze cat-config systemd/logind.conf")
        assert "HandleLidSwitch=ignore" in cfg, "logind does not ignore the lid"


def verify_boot_target(host, s: Settings) -> None:
    """it boots to multi-user.target and the listed services are enabled and running"""
    if s.headless:
        assert host.check_output("systemctl get-default") == "multi-user.target"
    for unit in s.services:
        enabled, state = enabled_state(host, unit)
        assert enabled, not_enabled_message(unit, state)
        assert host.service(unit).is_running, f"{unit} is not running"


def verify_wake_on_lan(host, s: Settings) -> None:
    """wake-on-LAN is on (magic packet)"""
    if not s.wake_on_lan_interface:
        raise Skip("no autostart.wake_on_lan_interface set")
    out = host.check_output(f"ethtool -- {shell.cmd(s.wake_on_lan_interface)}")
    wol = [x.split(":", 1)[1].strip() for x in out.splitlines() if x.strip().startswith("Wake-on:")]
    if not wol:
        raise Skip(f"{s.wake_on_lan_interface} does not support wake-on-LAN")
    assert "g" in wol[0], f"Wake-on: {wol[0]}"


def verify_power_on_after_power_loss(host, s: Settings) -> None:
    """firmware powers on after a power cut (manual)"""
    raise Skip(
        "manual: only the firmware can do this. In the BIOS/UEFI setup, set 'Restore on AC "
        "Power Loss' (or 'After Power Failure') to 'Power On'; check it by pulling the plug"
    )


STEP = Step(
    name="autostart",
    summary="headless boot target, never sleep, services at boot, wake-on-LAN",
    settings=Settings,
    check=check,
    reads=reads,
    verify=(
        verify_never_sleeps,
        verify_boot_target,
        verify_wake_on_lan,
        verify_power_on_after_power_loss,
    ),
)
