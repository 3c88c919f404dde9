"""ssh: a hardened sshd that cannot lock you out.

Manages: `/etc/ssh/sshd_config.d/00-provision.conf` (port, root login, password and
keyboard-interactive login, X11 forwarding, MaxAuthTries, AllowUsers/AllowGroups), checked
with `sshd -t` on the staged file and on the whole configuration before sshd restarts.
Handles socket activation (Ubuntu 24.04's ssh.socket owns the port: daemon-reload and a
socket restart). Applied as a Guarded change: a fresh key-only login must work first, and a
fresh login (on the new port) after the restart, or the host restores the old file by itself.
Before any change the whole configuration must pass `sshd -t`: a host whose sshd config is
invalid already (a typo in another drop-in) is refused, naming the file and line, and nothing
in sshd is touched (a restart would not come back). check reads sshd's effective
configuration (`sshd -T`) and its own trace of which file and line set each keyword
(`sshd -T -ddd`): a line elsewhere that beats 00-provision.conf (a drop-in sorting before it,
the main sshd_config above its Include, a `Match` block loosening a managed keyword) is
commented out in that file, in the same Guarded change (the old file is kept as a backup and
put back by a rollback); one readable by root only is never read whole or rewritten: refused,
naming the line. Refusing (not moving a broken file aside) keeps the admin's files theirs:
the fix is one line they understand. Rollbacks restart sshd only when the restored config
passes `sshd -t`; otherwise the running sshd is left alone and the message says what to fix.
Optional: ufw with the SSH port allowed before it is enabled, and fail2ban's sshd jail
(`/etc/fail2ban/jail.d/provision-sshd.conf`, journal backend); both refused in containers.
Where systemd-resolved runs, its LLMNR and mDNS responders (port 5355 on every address) are
switched off by `/etc/systemd/resolved.conf.d/provision-no-multicast.conf` unless
`ssh.resolver_multicast`: verify allows nothing but sshd beyond loopback.
Restarts ssh (existing sessions survive) and fail2ban; never reboots.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from provision import resources, shell
from provision.changes import Change, Guarded, Run, Upload
from provision.errors import ProvisionError, Skip, StepError
from provision.facts import sshd as sshd_facts
from provision.facts.reads import Read
from provision.firewall import UFW_STATUS, ufw_active, ufw_allows
from provision.resources import packages, service, template_file
from provision.settings import each, one_of, positive, setting, unix_name
from provision.step import Context, Step
from provision.steps.sshd_config import (
    CONF,
    our_position,
    override_uploads,
    overrides,
    read_sshd,
    refuse_invalid,
    unexplained,
)
from provision.templates import render, sha256

TEMPLATE = "ssh/00-provision.conf.j2"
JAIL = "/etc/fail2ban/jail.d/provision-sshd.conf"
RESOLVED_CONF = "/etc/systemd/resolved.conf.d/provision-no-multicast.conf"
# Ubuntu 24.04: ssh.socket listens and its generator reads Port from sshd_config at
# daemon-reload. Debian 12 and 13 (OpenSSH 10.0 ships ssh.socket disabled) / Ubuntu 22.04:
# ssh.service listens itself.
RESTART = (
    "if systemctl is-enabled -q ssh.socket 2>/dev/null || systemctl is-active -q ssh.socket;"
    " then systemctl daemon-reload && systemctl restart ssh.socket; fi"
    " && systemctl restart ssh.service"
)
# What a rollback runs once the old files are back: never a restart with a config that sshd
# rejects (sshd would not come back). Exit 4 tells guard "invalid, the daemon was left alone".
RESTORE = f"if sshd -t; then {RESTART}; else exit 4; fi"


def port_number(value: int) -> None:
    if not 0 < value < 65536:
        raise ValueError(f"{value} is not a TCP port (1-65535)")


def port_text(value: str) -> None:
    if not (value.isdigit() and 0 < int(value) < 65536):
        raise ValueError(f"{value!r} is not a TCP port (1-65535)")


@dataclass(frozen=True)
class Settings:
    """Settings of the ssh step (inventory keys `ssh.<field>`)."""

    port: int = setting(22, "the port sshd listens on", port_number)
    permit_root_login: str = setting(
        "prohibit-password",
        "root login: prohibit-password (keys only) or no",
        one_of("prohibit-password", "no"),
    )
    password_authentication: bool = setting(False, "allow password login (keys only when off)")
    x11_forwarding: bool = setting(False, "allow X11 forwarding")
    max_auth_tries: int = setting(3, "authentication attempts per connection", positive)
    allow_users: tuple[str, ...] = setting((), "only these users may log in", each(unix_name))
    allow_groups: tuple[str, ...] = setting((), "only these groups may log in", each(unix_name))
    rollback_after_s: int = setting(90, "undo an unconfirmed change after this long", positive)
    ufw: bool = setting(False, "firewall: ufw on, allowing the SSH port (allowed before enabling)")
    fail2ban: bool = setting(False, "ban addresses that keep failing to log in (fail2ban)")
    fail2ban_max_retry: int = setting(5, "failed logins before a ban", positive)
    fail2ban_ban_time_s: int = setting(600, "how long a ban lasts", positive)
    open_ports: tuple[str, ...] = setting(
        (),
        "TCP ports besides sshd's that may listen on non-loopback addresses (checked by "
        "verify), e.g. 6006 with tensorboard.bind_all",
        each(port_text),
    )
    resolver_multicast: bool = setting(
        False, "let systemd-resolved answer LLMNR/mDNS on the LAN (TCP/UDP 5355, UDP 5353)"
    )


def variables(s: Settings) -> dict:
    return {
        "port": s.port,
        "permit_root_login": s.permit_root_login,
        "password_authentication": s.password_authentication,
        "x11_forwarding": s.x11_forwarding,
        "max_auth_tries": s.max_auth_tries,
        "allow_users": s.allow_users,
        "allow_groups": s.allow_groups,
    }


def reads(ctx: Context) -> list[Read]:
    """What check reads: sshd (one script), our drop-in's state for the diff, the firewall's
    and the resolver's files, from the facts and settings alone."""
    s: Settings = ctx.settings(Settings)
    f = ctx.facts
    wanted = [sshd_facts.READ, resources.file_read(ctx, CONF)]
    if (s.ufw or s.fail2ban) and not f.in_container:
        if s.ufw and f.installed("ufw"):
            wanted.append(UFW_STATUS)
        if s.fail2ban:
            wanted.append(resources.file_read(ctx, JAIL))
            if f.installed("fail2ban"):
                wanted.append(resources.service_read("fail2ban"))
    if not s.resolver_multicast and has_resolved(f):
        wanted.append(resources.file_read(ctx, RESOLVED_CONF))
    return wanted


def check(ctx: Context) -> list[Change]:
    """What ssh would change on this host."""
    s: Settings = ctx.settings(Settings)
    return sshd_changes(ctx, s) + firewall_changes(ctx, s) + resolver_changes(ctx, s)


def has_resolved(f) -> bool:
    """systemd-resolved is its own package from Debian 12 and Ubuntu 24.04 on; Ubuntu 22.04's
    comes with systemd itself."""
    return f.installed("systemd-resolved") or (f.os_id == "ubuntu" and f.os_version == "22.04")


def resolver_changes(ctx: Context, s: Settings) -> list[Change]:
    """systemd-resolved's LAN responders (LLMNR, mDNS) off, unless ssh.resolver_multicast."""
    if s.resolver_multicast or not has_resolved(ctx.facts):
        return []
    # Restarted only when it runs (a box may have the package but use another resolver).
    return template_file(
        ctx,
        "ssh/resolved-no-multicast.conf.j2",
        RESOLVED_CONF,
        {},
        restart="systemd-resolved.service",
        restart_only_if_running=True,
    )


def firewall_changes(ctx: Context, s: Settings) -> list[Change]:
    """ufw (the SSH port allowed first, then enabled) and fail2ban's sshd jail."""
    if not (s.ufw or s.fail2ban):
        return []
    f = ctx.facts
    if f.in_container:
        raise ProvisionError(
            f"{ctx.host}: ssh.ufw and ssh.fail2ban do not run inside a container ({f.container})",
            "their firewall rules would land on the machine the container shares its network "
            "with; set them on the real box or a VM",
        )
    wanted = (["ufw"] if s.ufw else []) + (["fail2ban", "python3-systemd"] if s.fail2ban else [])
    changes = packages(ctx, wanted)
    if s.ufw:
        status = ctx.read(UFW_STATUS.command, sudo=True).stdout if f.installed("ufw") else ""
        rule = f"{s.port}/tcp"
        if not ufw_allows(status, rule):
            changes.append(
                Change(f"allow SSH ({rule}) in ufw", (Run(shell.cmd("ufw", "allow", rule)),))
            )
        if not ufw_active(status):
            changes.append(Change("enable ufw (SSH allowed first)", (Run("ufw --force enable"),)))
    if s.fail2ban:
        variables = {
            "port": s.port,
            "max_retry": s.fail2ban_max_retry,
            "ban_time_s": s.fail2ban_ban_time_s,
        }
        changes += template_file(
            ctx,
            "ssh/fail2ban-sshd.conf.j2",
            JAIL,
            variables,
            restart="fail2ban",
        )
        if f.installed("fail2ban"):
            changes += service(ctx, "fail2ban")
    return changes


def desired(s: Settings) -> dict[str, str]:
    """The single-valued keywords provision sets, as `sshd -T` prints them."""
    return {
        "permitrootlogin": "without-password"
        if s.permit_root_login == "prohibit-password"
        else s.permit_root_login,
        "passwordauthentication": "yes" if s.password_authentication else "no",
        "kbdinteractiveauthentication": "no",
        "pubkeyauthentication": "yes",
        "x11forwarding": "yes" if s.x11_forwarding else "no",
        "maxauthtries": str(s.max_auth_tries),
    }


def desired_lists(s: Settings) -> dict[str, set[str]]:
    """AllowUsers/AllowGroups when set: the effective lists must be exactly these."""
    return {"allowusers": set(s.allow_users), "allowgroups": set(s.allow_groups)}


def sshd_changes(ctx: Context, s: Settings) -> list[Change]:
    """The drop-in, and the lines elsewhere that would beat it, as one Guarded change."""
    state = read_sshd(ctx)
    refuse_invalid(ctx.host, state)
    if our_position(state.trace) is None:
        raise StepError(
            f"{ctx.host}: sshd does not read {CONF}: /etc/ssh/sshd_config has no Include of "
            "/etc/ssh/sshd_config.d/*.conf",
            "add `Include /etc/ssh/sshd_config.d/*.conf` near the top of /etc/ssh/sshd_config "
            "(Debian and Ubuntu ship it as the first line), check with `sudo sshd -t`, rerun",
        )
    ours: list[Change] = []
    if state.conf_state != (
        True,
        ["644", "root", "root"],
        sha256(render(TEMPLATE, **variables(s))),
    ):
        # Differs (or is missing): file_content's own read of it (declared) gives the diff.
        ours = template_file(
            ctx, TEMPLATE, CONF, variables(s), mode="0644", validate="sshd -t -f {path}"
        )
    found = overrides(state, desired(s), desired_lists(s))
    uploads, diff = override_uploads(ctx.host, state, found)
    if not ours and not uploads:
        wrong = unexplained(state, desired(s), desired_lists(s), s.port)
        if wrong:
            raise StepError(
                f"{ctx.host}: sshd's effective configuration differs from {CONF} and no line "
                f"that overrides it was found: {'; '.join(wrong)}",
                "look at `sudo sshd -T` and the files `sudo sshd -T -ddd` names on the host",
            )
        return []
    summaries = [c.summary for c in ours]
    if found:
        where = ", ".join(f"{line.where} ({line.keyword} {line.value})" for line in found)
        noun = "line that beats" if len(found) == 1 else "lines that beat"
        summaries.append(f"comment out {len(found)} {noun} {CONF}: {where}")
    for change in ours:
        uploads = [a for a in change.actions if isinstance(a, Upload)] + uploads
        diff = change.diff + diff
    # Unchanged port: confirm on the port we came in on (it may be forwarded, as for a VM).
    confirm_port = None if str(s.port) in state.effective.get("port", []) else s.port
    guarded = Guarded(
        uploads=tuple(uploads),
        activate=f"sshd -t && {RESTART}",
        restore=RESTORE,
        confirm_port=confirm_port,
        rollback_after_s=s.rollback_after_s,
    )
    summary = f"{'; '.join(summaries)} and restart sshd (confirmed by a fresh login)"
    return [Change(summary, (guarded,), diff)]


def effective(host) -> dict[str, str]:
    """`sshd -T`: the values sshd really uses, lower-case keys (lists joined by spaces)."""
    return sshd_facts.effective(host.check_output("sshd -T"))


def verify_hardened(host, s: Settings) -> None:
    """sshd -T shows the hardened values"""
    v = effective(host)
    want = desired(s)
    wrong = {k: v.get(k) for k, val in want.items() if v.get(k) != val}
    assert not wrong, f"sshd -T differs from the settings: {wrong}"
    if s.allow_users:
        assert set(v.get("allowusers", "").split()) == set(s.allow_users), v.get("allowusers")


def verify_firewall(host, s: Settings) -> None:
    """ufw is active and allows SSH; fail2ban watches sshd"""
    if not (s.ufw or s.fail2ban):
        raise Skip("ssh.ufw and ssh.fail2ban are off")
    if s.ufw:
        status = host.check_output("ufw status")
        assert ufw_active(status), "ufw is not active"
        assert ufw_allows(status, f"{s.port}/tcp"), f"ufw does not allow {s.port}/tcp"
    if s.fail2ban:
        jail = host.run("fail2ban-client status sshd")
        assert jail.rc == 0, f"fail2ban has no sshd jail: {jail.stderr.strip()}"


def verify_listening(host, s: Settings) -> None:
    """sshd listens on the configured port"""
    ports = set(sshd_facts.parse_effective(host.check_output("sshd -T")).get("port", []))
    assert str(s.port) in ports, f"sshd -T ports: {sorted(ports)}"
    listening = host.run(f"ss -Htln 'sport = :{s.port}'")
    if listening.rc != 0:
        raise Skip("ss (iproute2) is not available")
    assert listening.stdout.strip(), f"nothing listens on TCP port {s.port}"


def is_loopback(address: str) -> bool:
    """`127.0.0.53%lo`, `[::1]`, `[::ffff:127.0.0.1]` yes; `0.0.0.0`, `*`, `[::]` no."""
    address = address.strip("[]").split("%")[0]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def exposed_listeners(ss_output: str, s: Settings) -> tuple[list[str], list[str]]:
    """From `ss -Htlnp`: listeners on non-loopback addresses that are neither sshd (by
    process or by ssh.port) nor in ssh.open_ports, split into (with a process, without one)."""
    allowed = {str(s.port), *s.open_ports}
    owned, unowned = [], []
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        address, _, port = fields[3].rpartition(":")
        process = line[line.index("users:") :] if "users:" in line else ""
        if is_loopback(address) or port in allowed or '"sshd"' in process:
            continue
        (owned if process else unowned).append(f"{fields[3]} {process}".strip())
    return owned, unowned


def verify_exposure(host, s: Settings) -> None:
    """nothing but sshd (and ssh.open_ports) listens on a non-loopback TCP address"""
    listening = host.run("ss -Htlnp")
    if listening.rc != 0:
        raise Skip("ss (iproute2) is not available")
    owned, unowned = exposed_listeners(listening.stdout, s)
    assert not owned, f"listening beyond loopback: {'; '.join(owned)} (or add to ssh.open_ports)"
    if unowned and host.run("systemd-detect-virt --container").rc == 0:
        raise Skip(
            "a container sharing its host's network: listeners of processes outside it "
            f"({', '.join(unowned)}) are the host's, not this box's"
        )
    assert not unowned, f"listening beyond loopback (no process shown): {', '.join(unowned)}"


STEP = Step(
    name="ssh",
    summary="hardened sshd drop-in (00-provision.conf), sshd -t, socket activation, no lockout",
    settings=Settings,
    check=check,
    verify=(verify_hardened, verify_listening, verify_exposure, verify_firewall),
    reads=reads,
)
