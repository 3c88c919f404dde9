"""ssh.check as a table: the Guarded drop-in, the confirm port, ufw order, container refusal.

Every check here runs on a strict Context whose reads are the step's declared ones (an
undeclared read raises). Expectations come from outside the code under test: recorded
output of a real sshd (tests/data/sshd), file contents written out here, and, where sshd is
installed, the real `sshd -T -f` reading the drop-in the step would write.
"""

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fakes import FakeRemote
from provision.changes import Guarded, Restart, Result
from provision.errors import ProvisionError, StepError
from provision.facts import parse_facts
from provision.facts import sshd as sshd_facts
from provision.firewall import ufw_active, ufw_allows
from provision.step import Context, UndeclaredRead
from provision.steps import ssh, sshd_config

DATA = Path(__file__).parent.parent / "data" / "facts"

# systemd-resolved's drop-in as the host must hold it (resolved.conf(5): LLMNR=, MulticastDNS=).
RESOLVED = """\
# Managed by provision (ssh/resolved-no-multicast.conf.j2): local edits are overwritten.
# systemd-resolved answers LLMNR (TCP/UDP 5355) and mDNS (UDP 5353) on every interface by
# default: name lookups for the LAN that a server does not need, and ports open beyond
# loopback. Set ssh.resolver_multicast = true to keep them.
[Resolve]
LLMNR=no
MulticastDNS=no
"""
RESOLVED_DIGEST = hashlib.sha256(RESOLVED.encode()).hexdigest()


def context(remote, f, settings) -> Context:
    """A strict Context whose reads are the step's declared ones, answered by `remote`."""
    ctx = Context("box", f, settings, gathered={}, strict=True)
    reads = ssh.STEP.reads(ctx)
    return dataclasses.replace(ctx, gathered=remote.read_all(reads, f.user))


def with_firewall_packages(f):
    """The facts with ufw, fail2ban and python3-systemd installed."""
    pkgs = dict(f.packages)
    for name in ("ufw", "fail2ban", "python3-systemd"):
        pkgs[name] = dataclasses.replace(next(iter(pkgs.values())), status="ii ")
    return dataclasses.replace(f, packages=pkgs)


def check(remote, facts_file="ubuntu-22.04-gpu.txt", resolver_done=True, **settings):
    if resolver_done:
        remote.on(r"stat -c .*provision-no-multicast", f"644 root root\n{RESOLVED_DIGEST}  x\n")
    f = with_firewall_packages(parse_facts((DATA / facts_file).read_text()))
    settings.setdefault("port", PORT)
    return ssh.check(context(remote, f, {"ssh": ssh.Settings(**settings)}))


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


# --- the drop-in says what the settings say (issue 17 §6: MaxAuthTries off by one and X11
# forwarding forced on were mutations no test saw) ---

DROPIN_CASES = [
    (
        {},
        [
            f"Port {PORT}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "X11Forwarding no",
            "MaxAuthTries 3",
        ],
    ),
    (
        {"port": 2222, "max_auth_tries": 5, "allow_users": ("alice", "bob")},
        [
            "Port 2222",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "X11Forwarding no",
            "MaxAuthTries 5",
            "AllowUsers alice bob",
        ],
    ),
    (
        {
            "permit_root_login": "no",
            "password_authentication": True,
            "x11_forwarding": True,
            "max_auth_tries": 1,
            "allow_groups": ("ssh-users",),
        },
        [
            f"Port {PORT}",
            "PermitRootLogin no",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "X11Forwarding yes",
            "MaxAuthTries 1",
            "AllowGroups ssh-users",
        ],
    ),
]
DROPIN_IDS = ["defaults", "port-tries-users", "loosened"]


def fresh_dropin(**settings) -> bytes:
    """The drop-in the step would write on the recorded fresh host."""
    (change,) = check(host("fresh"), **settings)
    return upload_of(change, sshd_config.CONF).content


@pytest.mark.parametrize(("settings", "lines"), DROPIN_CASES, ids=DROPIN_IDS)
def test_ssh_dropin_says_what_the_settings_say(settings, lines):
    text = fresh_dropin(**settings).decode()
    assert [x for x in text.splitlines() if x and not x.startswith("#")] == lines


# What sshd -T prints for each case's drop-in (sshd_config(5); -T prints the old name
# without-password for prohibit-password, and one line per AllowUsers name).
SSHD_T_CASES = [
    {
        "port": [str(PORT)],
        "permitrootlogin": ["without-password"],
        "passwordauthentication": ["no"],
        "kbdinteractiveauthentication": ["no"],
        "pubkeyauthentication": ["yes"],
        "x11forwarding": ["no"],
        "maxauthtries": ["3"],
    },
    {
        "port": ["2222"],
        "permitrootlogin": ["without-password"],
        "passwordauthentication": ["no"],
        "x11forwarding": ["no"],
        "maxauthtries": ["5"],
        "allowusers": ["alice", "bob"],
    },
    {
        "permitrootlogin": ["no"],
        "passwordauthentication": ["yes"],
        "kbdinteractiveauthentication": ["no"],
        "x11forwarding": ["yes"],
        "maxauthtries": ["1"],
        "allowgroups": ["ssh-users"],
    },
]
SSHD_BIN = shutil.which("sshd") or next(
    (p for p in ("/usr/sbin/sshd", "/sbin/sshd") if Path(p).exists()), None
)


@pytest.mark.skipif(not (SSHD_BIN and shutil.which("ssh-keygen")), reason="no OpenSSH sshd here")
@pytest.mark.parametrize(
    ("settings", "want"),
    [(c[0], w) for c, w in zip(DROPIN_CASES, SSHD_T_CASES, strict=True)],
    ids=DROPIN_IDS,
)
def test_ssh_dropin_as_the_real_sshd_reads_it(tmp_path, settings, want):
    """The real sshd reads the drop-in alone (`sshd -T -f`): it is valid, its values are the
    settings', and `desired` (what check compares the host's sshd -T with) agrees."""
    conf = tmp_path / "00-provision.conf"
    conf.write_bytes(fresh_dropin(**settings))
    if os.geteuid() == 0:
        # As root, sshd -T wants its privilege separation directory, which ssh.service makes
        # (RuntimeDirectory=sshd); a machine where sshd never ran has none.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    out = subprocess.run(
        [SSHD_BIN, "-T", "-f", conf, "-h", key], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    seen: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        k, _, v = line.partition(" ")
        seen.setdefault(k, []).append(v)
    assert {k: seen.get(k) for k in want} == want
    s = ssh.Settings(**{"port": PORT, **settings})
    assert {k: seen[k][0] for k in ssh.desired(s)} == ssh.desired(s)
    for k, names in ssh.desired_lists(s).items():
        assert set(seen.get(k, [])) == names


@pytest.mark.parametrize(
    ("recorded", "effective", "message"),
    [
        ("maxauthtries 3", "maxauthtries 4", "maxauthtries is 4, not 3"),
        ("maxauthtries 3", "maxauthtries 2", "maxauthtries is 2, not 3"),
        ("x11forwarding no", "x11forwarding yes", "x11forwarding is yes, not no"),
        ("passwordauthentication no", "passwordauthentication yes", "passwordauthentication"),
        ("permitrootlogin without-password", "permitrootlogin yes", "permitrootlogin is yes"),
        ("kbdinteractiveauthentication no", "kbdinteractiveauthentication yes", "kbdinteract"),
        ("pubkeyauthentication yes", "pubkeyauthentication no", "pubkeyauthentication is no"),
        (f"port {PORT}", "port 22", f"port {PORT} is not among 22"),
    ],
)
def test_ssh_effective_value_off_by_one_is_an_error(recorded, effective, message):
    """The converged host's sshd -T with one value changed that no file explains."""
    text = sshd("converged")
    assert f"\n{recorded}\n" in text
    with pytest.raises(StepError, match=message):
        check(FakeRemote().on(r"@@test", re.sub(f"(?m)^{recorded}$", effective, text)))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_auth_tries": 4}, "maxauthtries is 3, not 4"),
        ({"max_auth_tries": 2}, "maxauthtries is 3, not 2"),
        ({"x11_forwarding": True}, "x11forwarding is no, not yes"),
        ({"password_authentication": True}, "passwordauthentication is no, not yes"),
        ({"permit_root_login": "no"}, "permitrootlogin is without-password, not no"),
        ({"allow_users": ("alice",)}, "allowusers is (unset), not alice"),
        ({"allow_groups": ("g",)}, "allowgroups is (unset), not g"),
    ],
)
def test_ssh_wanted_value_the_host_does_not_have_is_seen(settings, message):
    """Settings that differ from the converged host's sshd: the drop-in is rewritten, and
    with the old drop-in reported as ours (its hash matching), sshd -T alone tells."""
    r = host("converged").on(r"^(?!.*@@test).*stat -c .*00-provision\.conf", CONVERGED_DROPIN)
    (change,) = check(r, **settings)
    assert change.summary.startswith(f"update {sshd_config.CONF}")
    state = sshd_config.parse_sshd(sshd("converged"))
    s = ssh.Settings(port=PORT, **settings)
    wrong = sshd_config.unexplained(state, ssh.desired(s), ssh.desired_lists(s), s.port)
    assert [w for w in wrong if message in w], wrong


# The converged host's drop-in, as the recorded sshd read's @@conf section shows it.
CONVERGED_DROPIN = (
    "644 root root\n"
    "67ed675e833d2c66f157f4b8740fdbbf79b51cfdf0e030cb4c75feb3571a6ec4  "
    "/etc/ssh/sshd_config.d/00-provision.conf\n"
)


def test_ssh_allow_users_exactly_the_settings():
    state = sshd_config.parse_sshd(sshd("include-missing"))
    s = ssh.Settings(port=PORT, allow_users=("tester",))
    assert sshd_config.unexplained(state, ssh.desired(s), ssh.desired_lists(s), PORT) == []
    s = ssh.Settings(port=PORT, allow_users=("tester", "bob"))
    wrong = sshd_config.unexplained(state, ssh.desired(s), ssh.desired_lists(s), PORT)
    assert wrong == ["allowusers is tester, not bob tester"]


def test_ssh_guarded_change_carries_the_rollback_time():
    (change,) = check(host("fresh"), rollback_after_s=45)
    assert change.actions[0].rollback_after_s == 45


# --- the sshd reader (facts.sshd) on recorded output ---


def test_sshd_effective_parses_plain_sshd_t():
    text = sshd("include-missing")
    effective = text[text.index("@@effective\n") + 12 : text.index("@@trace")]
    values = sshd_facts.effective(effective)
    assert values["port"] == f"{PORT} {PORT}"  # this sshd prints its Port twice
    assert values["maxauthtries"] == "3"
    assert values["permitrootlogin"] == "without-password"
    assert values["x11forwarding"] == "no"
    assert values["allowusers"] == "tester"
    assert sshd_facts.effective("Port 22\nport 2222\nAllowUsers a\nallowusers b\n") == {
        "port": "22 2222",
        "allowusers": "a b",
    }


def test_sshd_read_is_one_root_read():
    assert sshd_facts.READ.sudo is True
    assert sshd_facts.READ.command == sshd_config.SSHD_PROBE
    assert sshd_facts.CONF == "/etc/ssh/sshd_config.d/00-provision.conf"


# --- ufw and fail2ban ---

UFW_ACTIVE = """\
Status: active

To                         Action      From
--                         ------      ----
2222/tcp                   ALLOW       Anywhere
6006/tcp                   DENY        Anywhere
2222/tcp (v6)              ALLOW       Anywhere (v6)
"""


def test_ufw_status_parsing():
    assert ufw_active(UFW_ACTIVE) and not ufw_active("Status: inactive\n")
    assert ufw_allows(UFW_ACTIVE, "2222/tcp")
    assert not ufw_allows(UFW_ACTIVE, "6006/tcp")  # DENY
    assert not ufw_allows(UFW_ACTIVE, "22/tcp")
    assert ssh.ufw_allows is ufw_allows  # still importable from the step


def test_ssh_ufw_active_but_port_missing_allows_it_without_re_enabling():
    r = converged(FakeRemote(), ssh.Settings(ufw=True)).on(r"ufw status", UFW_ACTIVE)
    assert [c.summary for c in check(r, ufw=True)] == ["allow SSH (54285/tcp) in ufw"]


JAIL = """\
# Managed by provision (ssh/fail2ban-sshd.conf.j2): local edits are overwritten.
# The systemd backend: Debian (12 and later) and Ubuntu 24.04 log sshd to the journal, not auth.log.
[sshd]
enabled = true
port = 54285
backend = systemd
maxretry = 4
bantime = 900
"""


def test_ssh_fail2ban_jail_and_service():
    r = converged(FakeRemote(), ssh.Settings()).on(r"sha256sum -- /etc/fail2ban", (1, ""))
    r.on(r"systemctl show .*fail2ban", "UnitFileState=disabled\nActiveState=inactive\n")
    changes = check(r, fail2ban=True, fail2ban_max_retry=4, fail2ban_ban_time_s=900)
    assert [c.summary for c in changes] == [
        f"write {ssh.JAIL}",
        "enable fail2ban at boot",
        "start fail2ban",
    ]
    upload, restart = changes[0].actions
    assert upload.content.decode() == JAIL and restart == Restart("fail2ban")
    digest = hashlib.sha256(JAIL.encode()).hexdigest()
    r.on(r"sha256sum -- /etc/fail2ban", f"644 root root\n{digest}  x\n")
    r.on(r"systemctl show .*fail2ban", "UnitFileState=enabled\nActiveState=active\n")
    assert check(r, fail2ban=True, fail2ban_max_retry=4, fail2ban_ban_time_s=900) == []


def test_ssh_resolver_dropin_is_the_documented_file():
    r = converged(FakeRemote(), ssh.Settings()).on(r"stat -c .*provision-no-multicast", (1, ""))
    (change,) = check(r, resolver_done=False)
    assert change.actions[0].content.decode() == RESOLVED


# --- every read is declared (strict Context), on several hosts and settings ---

READ_SETTINGS = [
    {},
    {"ufw": True, "fail2ban": True},
    {"ufw": True, "resolver_multicast": True, "port": 2222},
    {"fail2ban": True, "allow_users": ("alice",)},
]


class Failing(FakeRemote):
    """sshd answers as the recorded fresh host; every other read fails (exit 1, no output)."""

    def _exec(self, command, timeout_s, stdin):
        self.ran.append(command)
        return Result(0, sshd("fresh")) if "@@test" in command else Result(1, "")


@pytest.mark.parametrize(
    "facts_file",
    [
        "ubuntu-22.04-gpu.txt",
        "ubuntu-24.04-fresh.txt",
        "debian-12-nspawn.txt",
        "debian-12-docker.txt",
    ],
)
@pytest.mark.parametrize("settings", READ_SETTINGS, ids=["defaults", "firewall", "ufw", "jail"])
@pytest.mark.parametrize("packages", [False, True], ids=["bare", "firewall-packages"])
def test_ssh_declares_every_read(facts_file, settings, packages):
    """check looks up nothing it did not declare (an undeclared read raises), whether the
    other reads fail or the host answers as a recorded sshd (fresh and converged) does."""
    f = parse_facts((DATA / facts_file).read_text())
    f = with_firewall_packages(f) if packages else f
    s = ssh.Settings(**{"port": PORT, **settings})

    def answering(name):
        return (
            FakeRemote()
            .on(r"@@test; o=\$\(sshd -t", sshd(name))
            .on(r"ufw status", "Status: inactive\n")
            .on(r"systemctl show", "UnitFileState=enabled\nActiveState=active\n")
            .on(r"^(?!.*@@test).*stat -c", (1, ""))  # every other file: missing
        )

    for remote in (Failing(), answering("fresh"), answering("converged")):
        try:
            ssh.check(context(remote, f, {"ssh": s}))
        except UndeclaredRead:
            raise
        except ProvisionError as exc:  # refusing a container's firewall is an answer too
            assert "inside a container" in exc.message, exc.message
        assert any("@@test" in c for c in remote.ran)


def test_ssh_reads_are_the_lookups():
    """Every declared read is one check can look up: nothing is read that is never used
    (on a fresh Ubuntu with every option, each declared read is asked for)."""
    f = with_firewall_packages(parse_facts((DATA / "ubuntu-22.04-gpu.txt").read_text()))
    s = ssh.Settings(port=PORT, ufw=True, fail2ban=True)
    ctx = context(Failing(), f, {"ssh": s})
    ssh.check(ctx)
    assert set(ctx.gathered) == set(ssh.STEP.reads(ctx))
    assert len(ctx.gathered.keys_) == len(ssh.STEP.reads(ctx)) == 6


# --- killers of the mutation run's survivors (/work/notes/mutation-ssh.md) ---


@pytest.mark.parametrize(("value", "ok"), [(0, False), (1, True), (65535, True), (65536, False)])
def test_ssh_port_setting_is_a_tcp_port(value, ok):
    if ok:
        ssh.port_number(value)
        ssh.port_text(str(value))
    else:
        with pytest.raises(ValueError, match="not a TCP port"):
            ssh.port_number(value)
        with pytest.raises(ValueError, match="not a TCP port"):
            ssh.port_text(str(value))


@pytest.mark.parametrize("text", ["", "22a", "-1", " 22"])
def test_ssh_open_port_text_must_be_digits(text):
    with pytest.raises(ValueError, match="not a TCP port"):
        ssh.port_text(text)


def test_ssh_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ssh.Settings().port = 2222  # type: ignore[misc]


def read_names(facts_file, packages=False, **settings):
    """What ssh declares, by what it reads (the sshd script, a file, ufw, a unit)."""
    f = parse_facts((DATA / facts_file).read_text())
    f = with_firewall_packages(f) if packages else f
    ctx = Context("box", f, {"ssh": ssh.Settings(**settings)}, gathered={})
    names = []
    for read in ssh.STEP.reads(ctx):
        if read == sshd_facts.READ:
            names.append("sshd")
        elif read.command == "ufw status":
            names.append("ufw")
        elif read.command.startswith("systemctl show"):
            names.append("unit " + read.command.rsplit(" ", 1)[1])
        else:
            names.append(read.command.split(" -- ", 1)[1].split()[0])
    return names


@pytest.mark.parametrize(
    ("facts_file", "packages", "settings", "want"),
    [
        ("ubuntu-22.04-gpu.txt", False, {}, ["sshd", sshd_config.CONF, ssh.RESOLVED_CONF]),
        ("ubuntu-22.04-gpu.txt", False, {"resolver_multicast": True}, ["sshd", sshd_config.CONF]),
        ("ubuntu-24.04-fresh.txt", False, {}, ["sshd", sshd_config.CONF]),  # no resolved
        ("ubuntu-24.04-fresh.txt", False, {"ufw": True}, ["sshd", sshd_config.CONF]),  # no ufw
        ("ubuntu-24.04-fresh.txt", True, {"ufw": True}, ["sshd", sshd_config.CONF, "ufw"]),
        (
            "ubuntu-24.04-fresh.txt",
            True,
            {"fail2ban": True},
            ["sshd", sshd_config.CONF, ssh.JAIL, "unit fail2ban"],
        ),
        ("ubuntu-24.04-fresh.txt", False, {"fail2ban": True}, ["sshd", sshd_config.CONF, ssh.JAIL]),
        ("debian-12-nspawn.txt", True, {"ufw": True, "fail2ban": True}, ["sshd", sshd_config.CONF]),
    ],
)
def test_ssh_reads_exactly_what_its_check_needs(facts_file, packages, settings, want):
    """Nothing more is read than check can use (each read is a part of the one batch)."""
    assert read_names(facts_file, packages, **settings) == want


def test_ssh_resolved_by_release():
    """systemd-resolved: its own package on Debian 12 and Ubuntu 24.04, part of systemd on 22.04."""
    assert not ssh.has_resolved(parse_facts((DATA / "ubuntu-24.04-fresh.txt").read_text()))
    assert ssh.has_resolved(parse_facts((DATA / "ubuntu-22.04-gpu.txt").read_text()))


def test_ssh_container_without_firewall_settings_is_fine():
    assert check(host("converged"), "debian-12-nspawn.txt") == []


def test_ssh_summary_counts_the_lines_it_comments_out():
    (one,) = check(host("sorts-first"))
    assert "comment out 1 line that beats " in one.summary
    (two,) = check(host("match"))
    assert "comment out 2 lines that beat " in two.summary


class FakeHost:
    """The testinfra host a verify function sees: check_output and run from a table."""

    def __init__(self, outputs):
        self.outputs = outputs

    def check_output(self, command):
        return self.outputs[command]

    def run(self, command):
        out = self.outputs.get(command)
        return type("R", (), {"rc": 1 if out is None else 0, "stdout": out or "", "stderr": ""})


def recorded_sshd_t(name="converged"):
    text = sshd(name)
    return text[text.index("@@effective\n") + 12 : text.index("@@trace")]


def test_verify_hardened_reads_sshd_t():
    host_ = FakeHost({"sshd -T": recorded_sshd_t()})
    ssh.verify_hardened(host_, ssh.Settings(port=PORT))
    with pytest.raises(AssertionError, match="maxauthtries"):
        ssh.verify_hardened(host_, ssh.Settings(port=PORT, max_auth_tries=4))
    with pytest.raises(AssertionError, match="x11forwarding"):
        ssh.verify_hardened(host_, ssh.Settings(port=PORT, x11_forwarding=True))
    ssh.verify_hardened(
        FakeHost({"sshd -T": recorded_sshd_t("include-missing")}),
        ssh.Settings(port=PORT, allow_users=("tester",)),
    )
    with pytest.raises(AssertionError):
        ssh.verify_hardened(host_, ssh.Settings(port=PORT, allow_users=("tester",)))


def test_verify_listening_reads_the_port():
    ss = f"ss -Htln 'sport = :{PORT}'"
    host_ = FakeHost({"sshd -T": recorded_sshd_t(), ss: f"LISTEN 0 128 127.0.0.1:{PORT} *\n"})
    ssh.verify_listening(host_, ssh.Settings(port=PORT))
    with pytest.raises(AssertionError, match="sshd -T ports"):
        ssh.verify_listening(host_, ssh.Settings(port=22))


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53%lo", True),
        ("[::1]", True),
        ("[::ffff:127.0.0.1]", True),
        ("[::ffff:10.0.0.1]", False),
        ("0.0.0.0", False),
        ("[::]", False),
        ("*", False),
        ("10.1.2.3", False),
    ],
)
def test_is_loopback(address, loopback):
    assert ssh.is_loopback(address) is loopback


def test_exposure_each_exception_on_its_own():
    """A loopback listener, an opened port and sshd on another port are each fine alone;
    short lines (no address) are skipped; a line with its local address is enough."""
    out = (
        "\n"
        "LISTEN 0 128\n"
        'LISTEN 0 2048 127.0.0.1:6006 0.0.0.0:* users:(("tensorboard",pid=9,fd=9))\n'
        'LISTEN 0 5 0.0.0.0:8888 0.0.0.0:* users:(("jupyter-lab",pid=12,fd=6))\n'
        'LISTEN 0 128 0.0.0.0:2222 0.0.0.0:* users:(("sshd",pid=400,fd=3))\n'
        "LISTEN 0 64 0.0.0.0:2049\n"
    )
    s = ssh.Settings(port=22, open_ports=("8888",))
    assert ssh.exposed_listeners(out, s) == ([], ["0.0.0.0:2049"])
    owned, _ = ssh.exposed_listeners(out, ssh.Settings(port=22))
    assert owned == ['0.0.0.0:8888 users:(("jupyter-lab",pid=12,fd=6))']


# Where our drop-in goes when it is not there yet, in sshd's read order (sshd_config(5):
# Include reads the matching files in lexical order, where the Include line stands).
TRACE_HEAD = (
    "debug2: parse_server_config_depth: config /etc/ssh/sshd_config len 100\n"
    "debug2: /etc/ssh/sshd_config line 1: new include {pattern}\n"
)


@pytest.mark.parametrize("pattern", ["/etc/ssh/sshd_config.d/*.conf", "sshd_config.d/*.conf"])
def test_our_position_before_the_first_file_sorting_after_it(pattern):
    trace = sshd_facts.parse_trace(
        TRACE_HEAD.format(pattern=pattern)
        + "debug2: parse_server_config_depth: config /etc/ssh/sshd_config.d/00-aaa.conf len 1\n"
        + "debug2: parse_server_config_depth: config /etc/ssh/other.d/10-x.conf len 1\n"
        + "debug2: parse_server_config_depth: config /etc/ssh/sshd_config.d/10-x.conf len 1\n"
    )
    assert trace[sshd_config.our_position(trace)] == ("file", "/etc/ssh/sshd_config.d/10-x.conf")


def test_our_position_where_the_including_file_goes_on():
    """No drop-in sorts after ours: it comes where sshd_config's next line (or Include) is."""
    head = TRACE_HEAD.format(pattern="/etc/ssh/sshd_config.d/*.conf")
    aaa = "debug2: parse_server_config_depth: config /etc/ssh/sshd_config.d/00-aaa.conf len 1\n"
    inner = "debug3: /etc/ssh/sshd_config.d/00-aaa.conf:1 setting MaxAuthTries 9\n"
    for tail, want in [
        (
            "debug3: /etc/ssh/sshd_config:3 setting PasswordAuthentication yes\n",
            ("set", "/etc/ssh/sshd_config"),
        ),
        (
            "debug2: /etc/ssh/sshd_config line 4: new include /etc/ssh/more/*.conf\n",
            ("include", "/etc/ssh/more/*.conf"),
        ),
    ]:
        trace = sshd_facts.parse_trace(head + aaa + inner + tail)
        event = trace[sshd_config.our_position(trace)]
        got = (event[0], event[1].file if event[0] == "set" else event[1])
        assert got == want
    trace = sshd_facts.parse_trace(head + aaa + inner)
    assert sshd_config.our_position(trace) == len(trace)
    # an Include inside the drop-in it read (nested) does not end sshd_config's Include
    nested = "debug2: /etc/ssh/sshd_config.d/00-aaa.conf line 1: new include /etc/ssh/x/*.conf\n"
    trace = sshd_facts.parse_trace(head + aaa + nested)
    assert sshd_config.our_position(trace) == len(trace)


def test_a_line_after_where_ours_would_go_is_no_override():
    """sshd_config's own line after its Include is read after our drop-in: ours wins."""
    trace = (
        TRACE_HEAD.format(pattern="/etc/ssh/sshd_config.d/*.conf")
        + "debug3: /etc/ssh/sshd_config:3 setting PasswordAuthentication yes\n"
    )
    state = sshd_config.SshdState(trace=sshd_facts.parse_trace(trace))
    s = ssh.Settings()
    assert sshd_config.overrides(state, ssh.desired(s), ssh.desired_lists(s)) == []


@pytest.mark.skipif(not (SSHD_BIN and shutil.which("ssh-keygen")), reason="no OpenSSH sshd here")
@pytest.mark.skipif(Path(sshd_config.CONF).exists(), reason="this machine has provision's drop-in")
def test_the_read_script_on_a_real_sshd(tmp_path):
    """facts.sshd's read script, answered by the real sshd on a config of our own (sshd is a
    shell function here that points it at the files below), parsed and decided on: the line
    read before where our drop-in goes and the Match line beat it; the line after does not."""
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    (tmp_path / "d").mkdir()
    (tmp_path / "a").mkdir()
    # Read before ours: its `Match all` line is in sshd's first pass and in the Match scan.
    (tmp_path / "a" / "10-all.conf").write_text("Match all\n    MaxAuthTries 6\n")
    main = tmp_path / "sshd_config"
    main.write_text(
        "PasswordAuthentication yes\n"
        "ChallengeResponseAuthentication yes\n"  # the old name: sshd's trace prints it so
        f"Include {tmp_path}/a/*.conf\n"
        f"Include {sshd_config.CONF}\n"
        "MaxAuthTries 10\n"
        f"Include {tmp_path}/d/*.conf\n"
    )
    # No newline at its end; `Match all` lines are in sshd's first pass (its trace) too.
    (tmp_path / "d" / "50-match.conf").write_text(
        "Match User bob\n    X11Forwarding yes\nMatch all\n    PasswordAuthentication yes"
    )
    all_conf = tmp_path / "a" / "10-all.conf"
    for p in (
        tmp_path,
        tmp_path / "a",
        tmp_path / "d",
        main,
        all_conf,
        tmp_path / "d" / "50-match.conf",
    ):
        p.chmod(0o755 if p.is_dir() else 0o644)
    shim = f'sshd() {{ {SSHD_BIN} -f {main} -h {key} "$@"; }}; '
    out = subprocess.run(
        ["sh", "-c", shim + sshd_facts.READ.command], capture_output=True, text=True, timeout=60
    ).stdout
    state = sshd_facts.parse_sshd(out)
    assert state.valid, state.test_output
    assert state.effective["passwordauthentication"] == ["yes"]
    assert state.conf_state == (False, [], "")  # no drop-in yet
    assert [e[1] for e in state.trace if e[0] == "file"] == [
        str(main),
        str(all_conf),
        f"{tmp_path}/d/50-match.conf",
    ]
    s = ssh.Settings()
    found = sshd_config.overrides(state, ssh.desired(s), ssh.desired_lists(s))
    assert [(x.where, x.keyword, x.value) for x in found] == [
        (f"{all_conf}:2", "maxauthtries", "6"),  # once, though sshd's trace has it too
        (f"{tmp_path}/d/50-match.conf:2", "x11forwarding", "yes"),
        (f"{tmp_path}/d/50-match.conf:4", "passwordauthentication", "yes"),
        (f"{main}:1", "passwordauthentication", "yes"),
        (f"{main}:2", "kbdinteractiveauthentication", "yes"),
    ]
    mode, lines, private = state.files[f"{tmp_path}/d/50-match.conf"]
    assert mode.startswith("644 ") and not private
    assert lines == [
        "Match User bob",
        "    X11Forwarding yes",
        "Match all",
        "    PasswordAuthentication yes",
    ]
    uploads, _ = sshd_config.override_uploads("box", state, found)
    assert sorted(u.dest for u in uploads) == sorted(
        [str(main), str(all_conf), f"{tmp_path}/d/50-match.conf"]
    )
    for sub in ("new-a", "new-d"):
        (tmp_path / sub).mkdir()
    for upload in uploads:  # what provision would write is what the real sshd accepts
        rel = Path(upload.dest).relative_to(tmp_path)
        path = tmp_path / (
            f"new-{rel}" if len(rel.parts) == 1 else f"new-{rel.parts[0]}/{rel.name}"
        )
        text = upload.content.decode()
        for sub in ("a", "d"):
            text = text.replace(f"{tmp_path}/{sub}/", f"{tmp_path}/new-{sub}/")
        path.write_text(text)
    new = tmp_path / "new-sshd_config"
    out = subprocess.run(
        [SSHD_BIN, "-T", "-f", new, "-h", key, "-C", "user=bob,host=h,addr=10.0.0.1"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    values = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    # the commented-out Match line no longer gives bob X11 forwarding; the rest stands
    assert values["x11forwarding"] == "no" and values["maxauthtries"] == "10"


def test_sshd_read_parses_files_private_and_not():
    """The files section of the recorded read: a 0600 file shows only its managed lines,
    numbered (line 1, a Banner, stays hidden); a readable one comes whole."""
    private = sshd_facts.parse_sshd(sshd("private")).files["/etc/ssh/sshd_config.d/00-private.conf"]
    assert private == ("600 root root", ["", "PasswordAuthentication yes"], True)
    aaa = sshd_facts.parse_sshd(sshd("sorts-first")).files["/etc/ssh/sshd_config.d/00-aaa.conf"]
    assert aaa == ("644 root root", ["# a local override", "PasswordAuthentication yes"], False)


def test_sshd_read_cut_short_or_without_stat():
    """A file whose stat failed (it went away) has no mode; a read cut off before its end
    still has the files it got; an @@rc without a number is a failure."""
    text = "@@test\n@@rc \n@@effective\nport 22\n@@trace\n@@file /etc/ssh/x.conf\nPort 22\n"
    state = sshd_facts.parse_sshd(text)
    assert state.files == {"/etc/ssh/x.conf": ("", ["Port 22"], False)}
    assert not state.valid
    assert state.conf_state == (False, [], "")
    private = "@@test\n@@rc 0\n@@file /etc/ssh/p.conf\n@@stat 600 root root\n@@private\n\n@@conf\n"
    assert sshd_facts.parse_sshd(private).files == {"/etc/ssh/p.conf": ("600 root root", [], True)}


def test_sshd_state_defaults():
    state = sshd_facts.SshdState()
    assert state.valid and state.test_output == "" and state.effective == {} and state.files == {}


def test_split_line_without_a_keyword():
    assert sshd_facts.split_line("=yes") == ("", "")
    assert sshd_facts.split_line("   ") == ("", "")


def test_our_position_of_a_dropin_that_is_there():
    trace = sshd_facts.parse_sshd(sshd("converged")).trace
    assert trace[sshd_config.our_position(trace)] == ("file", sshd_config.CONF)


def test_our_position_skips_an_include_that_cannot_hold_ours():
    trace = sshd_facts.parse_trace(
        TRACE_HEAD.format(pattern="/etc/ssh/other.d/*.conf")
        + "debug2: parse_server_config_depth: config /etc/ssh/other.d/50-x.conf len 1\n"
        + "debug2: /etc/ssh/sshd_config line 2: new include /etc/ssh/sshd_config.d/*.conf\n"
        + "debug2: parse_server_config_depth: config /etc/ssh/sshd_config.d/50-y.conf len 1\n"
    )
    assert trace[sshd_config.our_position(trace)] == ("file", "/etc/ssh/sshd_config.d/50-y.conf")


def test_a_file_the_read_did_not_return_is_never_rewritten():
    """An overriding line in a file the read has no text of (it went away between sshd's
    trace and the read's cat): no upload of an empty file over it, no refusal either."""
    line = sshd_facts.Line(
        "/etc/ssh/sshd_config.d/00-gone.conf", 1, "passwordauthentication", "yes"
    )
    assert sshd_config.override_uploads("box", sshd_facts.SshdState(), [line]) == ([], "")
