"""ssh.check as a table: the Guarded drop-in, the confirm port, ufw order, container refusal."""

import dataclasses
from pathlib import Path

import pytest

from fakes import FakeRemote
from provision.changes import Guarded, Restart
from provision.errors import ProvisionError, StepError
from provision.facts import parse_facts
from provision.step import Context
from provision.steps import ssh, sshd_config
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
    settings.setdefault("port", PORT)
    s = ssh.Settings(**settings)
    ctx = Context(
        "box",
        dataclasses.replace(f, packages=pkgs),
        {"ssh": s},
        lambda c, sudo: remote.probe(c, sudo=sudo),
    )
    return ssh.check(ctx)


# Recorded from a real sshd (OpenSSH 9.2, Debian 12 container, listening on PORT) answering
# sshd_config.SSHD_PROBE: fresh (no 00-provision.conf yet), converged (the default drop-in for PORT),
# and each with one outside fault written into the host's files (tests/data/sshd/record.sh).
SSHD = Path(__file__).parent.parent / "data" / "sshd"
PORT = 54285


def sshd(name: str) -> str:
    return (SSHD / f"{name}.txt").read_text()


def host(name: str) -> FakeRemote:
    """A FakeRemote whose sshd answers as the recorded host did (a fresh host has no drop-in:
    file_content's own probe of it fails)."""
    r = FakeRemote().on(r"@@test; o=\$\(sshd -t", sshd(name))
    return r.on(r"^(?!.*@@test).*stat -c .*00-provision\.conf", (1, "")) if name == "fresh" else r


def converged(remote, s):
    return remote.on(r"@@test; o=\$\(sshd -t", sshd("converged"))


def upload_of(change, dest):
    (g,) = change.actions
    return next(u for u in g.uploads if u.dest == dest)


def test_ssh_dropin_is_a_guarded_change_validated_by_sshd():
    r = host("fresh")
    (change,) = check(r)
    assert change.summary.endswith("and restart sshd (confirmed by a fresh login)")
    (g,) = change.actions
    assert isinstance(g, Guarded) and g.confirm_port is None  # same port: confirm where we came in
    assert [u.dest for u in g.uploads] == ["/etc/ssh/sshd_config.d/00-provision.conf"]
    assert g.uploads[0].validate == "sshd -t -f {path}"
    assert g.activate.startswith("sshd -t && ") and "ssh.socket" in g.activate
    # the rollback restarts sshd only when the restored config passes sshd -t
    assert g.restore.startswith("if sshd -t; then ") and g.restore.endswith("else exit 4; fi")
    assert "+PasswordAuthentication no" in change.diff


def test_ssh_port_change_is_confirmed_on_the_new_port():
    (change,) = check(host("fresh"), port=2222)
    assert change.actions[0].confirm_port == 2222


def test_ssh_converged_has_no_changes():
    r = host("converged")
    assert check(r) == []
    # one probe read sshd and our drop-in's hash: no separate probe of 00-provision.conf
    assert [c for c in r.ran if "00-provision.conf" in c] == [c for c in r.ran if "@@test" in c]


def test_ssh_include_of_a_missing_file_is_fine():
    """sshd 9.2 says `no match for /etc/ssh/missing.conf` and goes on: nothing to refuse."""
    assert check(host("include-missing")) == []


def test_ssh_invalid_config_before_the_change_is_refused_with_file_and_line():
    with pytest.raises(StepError) as err:
        check(host("invalid"))
    text = err.value.message + err.value.hint
    assert "/etc/ssh/sshd_config.d/50-typo.conf: line 1: Bad configuration option" in text
    assert "fix or remove line 1 of /etc/ssh/sshd_config.d/50-typo.conf" in text
    assert "changes nothing in sshd" in text


def test_ssh_invalid_config_is_refused_even_when_the_dropin_is_right():
    """A typo elsewhere is a time bomb (sshd would not start after a reboot): always a finding."""
    with pytest.raises(StepError, match=r"50-typo\.conf"):
        check(host("invalid"), max_auth_tries=3)


def test_ssh_dropin_sorting_first_is_commented_out_in_the_same_guarded_change():
    (change,) = check(host("sorts-first"))
    assert "/etc/ssh/sshd_config.d/00-aaa.conf:2 (passwordauthentication yes)" in change.summary
    (g,) = change.actions
    assert [u.dest for u in g.uploads] == ["/etc/ssh/sshd_config.d/00-aaa.conf"]  # ours is right
    aaa = g.uploads[0]
    assert aaa.content == (
        b"# a local override\n"
        b"# provision: disabled, it overrides /etc/ssh/sshd_config.d/00-provision.conf: "
        b"PasswordAuthentication yes\n"
    )
    assert (aaa.mode, aaa.owner, aaa.group, aaa.validate) == (
        "0644",
        "root",
        "root",
        "sshd -t -f {path}",
    )
    assert "-PasswordAuthentication yes" in change.diff
    assert g.restore == ssh.RESTORE


def test_ssh_match_block_loosening_a_managed_keyword_is_commented_out():
    (change,) = check(host("match"))
    aaa = upload_of(change, "/etc/ssh/sshd_config.d/50-match.conf")
    lines = aaa.content.decode().splitlines()
    assert lines[0] == "X11Forwarding no"  # global, after ours, same value: untouched
    assert lines[1] == "Match User tester"
    assert lines[2].startswith("# provision: disabled") and "PasswordAuthentication yes" in lines[2]
    assert lines[3].startswith("# provision: disabled") and "MaxAuthTries 10" in lines[3]
    assert lines[4:] == ["Match Address 10.0.0.0/8", "    X11Forwarding no"]  # same as ours


def test_ssh_main_config_above_its_include_is_commented_out_there():
    (change,) = check(host("main-edited"))
    main = upload_of(change, "/etc/ssh/sshd_config")
    old = sshd_config.parse_sshd(sshd("main-edited")).files["/etc/ssh/sshd_config"][1]
    new = main.content.decode().splitlines()
    assert old[0] == "PermitRootLogin yes" and new[0].endswith(": PermitRootLogin yes")
    assert new[1:] == old[1:]
    assert "/etc/ssh/sshd_config:1 (permitrootlogin yes)" in change.summary


def test_ssh_without_the_include_is_refused():
    with pytest.raises(
        StepError, match=r"does not read /etc/ssh/sshd_config\.d/00-provision\.conf"
    ):
        check(host("no-include"))


def test_ssh_effective_value_that_no_file_explains_is_an_error_not_ok():
    text = sshd("converged").replace("\nmaxauthtries 3\n", "\nmaxauthtries 7\n", 1)
    with pytest.raises(StepError, match="maxauthtries is 7, not 3"):
        check(FakeRemote().on(r"@@test", text))


def test_ssh_allow_users_lines_elsewhere_add_up_and_are_commented_out():
    # include-missing's 20-inc.conf has `AllowUsers tester`: sshd adds it to ours, in any order
    state = sshd_config.parse_sshd(sshd("include-missing"))
    alice = ssh.Settings(port=PORT, allow_users=("alice",))
    found = sshd_config.overrides(state, ssh.desired(alice), ssh.desired_lists(alice))
    assert [line.where for line in found] == ["/etc/ssh/sshd_config.d/20-inc.conf:2"]
    tester = ssh.Settings(port=PORT, allow_users=("tester",))
    assert sshd_config.overrides(state, ssh.desired(tester), ssh.desired_lists(tester)) == []


def test_sshd_trace_names_files_in_read_order():
    state = sshd_config.parse_sshd(sshd("sorts-first"))
    files = [e[1] for e in state.trace if e[0] == "file"]
    assert files == [
        "/etc/ssh/sshd_config",
        "/etc/ssh/sshd_config.d/00-aaa.conf",
        "/etc/ssh/sshd_config.d/00-provision.conf",
        "/etc/ssh/sshd_config.d/10-testhost.conf",
    ]
    assert state.effective["passwordauthentication"] == ["yes"]
    assert state.conf_state[0] is True


def test_our_position_when_the_dropin_is_not_there_yet():
    state = sshd_config.parse_sshd(sshd("fresh"))
    events = state.trace
    i = sshd_config.our_position(events)
    assert events[i] == ("file", "/etc/ssh/sshd_config.d/10-testhost.conf")


def test_split_line_and_normal_follow_sshds_syntax():
    assert sshd_config.split_line("  passwordauthentication=yes") == (
        "passwordauthentication",
        "yes",
    )
    assert sshd_config.split_line("ChallengeResponseAuthentication yes")[0] == (
        "kbdinteractiveauthentication"
    )
    assert sshd_config.split_line("# PasswordAuthentication yes") == ("", "")
    assert sshd_config.normal("permitrootlogin", "prohibit-password") == "without-password"
    assert sshd_config.normal("passwordauthentication", "YES") == "yes"


def test_ssh_ufw_allows_the_port_before_enabling():
    r = converged(FakeRemote(), ssh.Settings(ufw=True)).on(r"ufw status", "Status: inactive\n")
    summaries = [c.summary for c in check(r, ufw=True)]
    assert summaries == ["allow SSH (54285/tcp) in ufw", "enable ufw (SSH allowed first)"]


def test_ssh_ufw_already_right():
    r = converged(FakeRemote(), ssh.Settings(ufw=True))
    r.on(
        r"ufw status",
        "Status: active\n\nTo                         Action      From\n54285/tcp                  ALLOW       Anywhere\n",
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


def test_ssh_private_dropin_is_neither_read_whole_nor_rewritten():
    """00-private.conf (0600): the probe shows only its managed lines; the fix is refused."""
    text = sshd("private")
    private = text[text.index("@@file /etc/ssh/sshd_config.d/00-private.conf") :]
    private = private[: private.index("\n@@file", 1)]
    assert "Banner" not in private and "2:PasswordAuthentication yes" in private
    with pytest.raises(StepError) as err:
        check(host("private"))
    assert "00-private.conf:2 (passwordauthentication yes) overrides" in err.value.message
    assert "readable by root only" in err.value.message


def test_ssh_without_openssh_says_so():
    r = FakeRemote().on(r"@@test", "@@test\n@@rc 127\nsh: 1: sshd: not found\n@@effective\n")
    with pytest.raises(StepError, match="no OpenSSH sshd"):
        check(r)
