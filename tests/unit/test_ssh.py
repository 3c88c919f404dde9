"""ssh.check as a table: the Guarded drop-in, the confirm port, ufw order, container refusal."""

import dataclasses
from pathlib import Path

import pytest

from fakes import FakeRemote
from provision.changes import Guarded, Restart
from provision.errors import ProvisionError
from provision.facts import parse_facts
from provision.step import Context
from provision.steps import ssh
from provision.templates import render, sha256

DATA = Path(__file__).parent.parent / "data" / "facts"


RESOLVED_DIGEST = sha256(render("ssh/resolved-no-multicast.conf.j2"))


def check(remote, facts_file="ubuntu-22.04-gpu.txt", resolver_done=True, **settings):
    if resolver_done:
        remote.on(r"stat -c .*provision-no-multicast", f"644 root root\n{RESOLVED_DIGEST}  x\n")
    f = parse_facts((DATA / facts_file).read_text())
    pkgs = dict(f.packages)
    for name in ("ufw", "fail2ban", "python3-systemd"):
        pkgs[name] = dataclasses.replace(next(iter(pkgs.values())), status="ii ")
    s = ssh.Settings(**settings)
    ctx = Context(
        "box",
        dataclasses.replace(f, packages=pkgs),
        {"ssh": s},
        lambda c, sudo: remote.probe(c, sudo=sudo),
    )
    return ssh.check(ctx)


def converged(remote, s):
    digest = sha256(render("ssh/00-provision.conf.j2", **ssh.variables(s)))
    return remote.on(r"stat -c .*00-provision.conf", f"644 root root\n{digest}  x\n")


def test_ssh_dropin_is_a_guarded_change_validated_by_sshd():
    r = FakeRemote().on(r"stat -c", (1, "")).on(r"sshd -T", "port 22\npasswordauthentication yes\n")
    (change,) = check(r)
    assert change.summary.endswith("and restart sshd (confirmed by a fresh login)")
    (g,) = change.actions
    assert isinstance(g, Guarded) and g.confirm_port is None  # same port: confirm where we came in
    assert g.uploads[0].dest == "/etc/ssh/sshd_config.d/00-provision.conf"
    assert g.uploads[0].validate == "sshd -t -f {path}"
    assert g.activate.startswith("sshd -t && ") and "ssh.socket" in g.activate
    assert "+PasswordAuthentication no" in change.diff


def test_ssh_port_change_is_confirmed_on_the_new_port():
    r = FakeRemote().on(r"stat -c", (1, "")).on(r"sshd -T", "port 22\n")
    (change,) = check(r, port=2222)
    assert change.actions[0].confirm_port == 2222


def test_ssh_converged_has_no_changes():
    assert check(converged(FakeRemote(), ssh.Settings())) == []


def test_ssh_ufw_allows_the_port_before_enabling():
    r = converged(FakeRemote(), ssh.Settings(ufw=True)).on(r"ufw status", "Status: inactive\n")
    summaries = [c.summary for c in check(r, ufw=True)]
    assert summaries == ["allow SSH (22/tcp) in ufw", "enable ufw (SSH allowed first)"]


def test_ssh_ufw_already_right():
    r = converged(FakeRemote(), ssh.Settings(ufw=True))
    r.on(
        r"ufw status",
        "Status: active\n\nTo                         Action      From\n22/tcp                     ALLOW       Anywhere\n",
    )
    assert check(r, ufw=True) == []


def test_ssh_firewall_refused_in_a_container():
    r = converged(FakeRemote(), ssh.Settings(fail2ban=True))
    with pytest.raises(ProvisionError, match="inside a container"):
        check(r, "debian-12-nspawn.txt", fail2ban=True)


def test_ssh_switches_off_resolveds_lan_responders():
    r = converged(FakeRemote(), ssh.Settings()).on(r"stat -c .*provision-no-multicast", (1, ""))
    (change,) = check(r, resolver_done=False)
    upload, restart = change.actions
    assert upload.dest == "/etc/systemd/resolved.conf.d/provision-no-multicast.conf"
    assert b"LLMNR=no" in upload.content and b"MulticastDNS=no" in upload.content
    assert restart == Restart("systemd-resolved.service", only_if_running=True)


def test_ssh_keeps_resolveds_responders_when_asked_or_absent():
    r = converged(FakeRemote(), ssh.Settings())
    assert check(r, resolver_done=False, resolver_multicast=True) == []
    f = parse_facts((DATA / "debian-12-nspawn.txt").read_text())
    assert not ssh.has_resolved(f)
    assert ssh.has_resolved(parse_facts((DATA / "ubuntu-22.04-gpu.txt").read_text()))


def test_exposure_names_resolveds_llmnr_listener():
    out = (
        'LISTEN 0 4096 0.0.0.0:5355 0.0.0.0:* users:(("systemd-resolve",pid=232,fd=12))\n'
        'LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=400,fd=3))\n'
        'LISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:* users:(("systemd-resolve",pid=232,fd=17))\n'
    )
    owned, unowned = ssh.exposed_listeners(out, ssh.Settings())
    assert owned == ['0.0.0.0:5355 users:(("systemd-resolve",pid=232,fd=12))'] and not unowned
