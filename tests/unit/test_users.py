"""users.check as a table: getent answers and key files in, changes and commands out. Every
check runs on a strict Context: a read users does not declare fails the test."""

import subprocess
from pathlib import Path

import pytest

import declared
from fakes import FakeRemote
from provision.config import load_hosts
from provision.errors import ConfigError
from provision.facts import parse_facts
from provision.inventory import parse
from provision.steps import users
from provision.templates import render, sha256

DATA = Path(__file__).parent.parent / "data" / "facts"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDOzxK7Ms0Hb5Wc0eoF8q2vS2bt2p4yJ9O4wbn6p1Yb alice@laptop"
KEY2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ9w3oSx6fWz1oVZ7j0p7uQ1mJrYb7Wl4h8dL4o3nXyZ bob@laptop"
GROUPS = "group video:x:44:\ngroup render:x:105:\n"
# bob's key file and its modes, read in his home as the host's passwd database has it
BOBS_KEYS = r'getent passwd bob \| cut -d: -f6.*cat -- "\$h/.ssh/authorized_keys"'
BOBS_MODES = r'getent passwd bob \| cut -d: -f6.*stat -c .* "\$h/.ssh" "\$h/.ssh/authorized_keys"'


def check(remote, facts_file="debian-12-nspawn.txt", **settings):
    s = users.Settings(**settings)
    f = parse_facts((DATA / facts_file).read_text())
    return users.check(declared.context(users.STEP, f, {"users": s}, remote))


def test_users_nothing_to_do_without_accounts():
    assert check(FakeRemote()) == []


def test_users_creates_account_with_groups_and_keys(tmp_path):
    pub = tmp_path / "alice.pub"
    pub.write_text(KEY + "\n")
    r = FakeRemote().on(r"getent", GROUPS)
    changes = check(r, accounts=("alice",), authorized_keys=(str(pub),))
    assert [c.summary for c in changes] == ["create user alice", "authorize 1 key for alice"]
    assert changes[0].actions[0].command == "useradd -m -s /bin/bash -G video,render -- alice"
    mkdir, upload = changes[1].actions
    assert mkdir.command == "install -d -m 0700 -o alice -g alice -- /home/alice/.ssh"
    assert (upload.dest, upload.mode, upload.owner) == (
        "/home/alice/.ssh/authorized_keys",
        "0600",
        "alice",
    )
    assert upload.content.decode() == KEY + "\n"


def test_users_existing_account_gets_missing_groups_and_keeps_its_keys():
    # An existing docker group is not joined: membership is root-equivalent (Docker's docs,
    # "Docker daemon attack surface"), so only containers.docker_users adds anyone to it.
    r = FakeRemote().on(
        r"getent",
        "passwd bob:x:1001:1001::/home/bob:/bin/bash\n" + GROUPS + "group docker:x:999:\n",
    )
    r.on(BOBS_KEYS, KEY2 + "\n# a comment the user wrote\n")
    changes = check(r, accounts=("bob",), authorized_keys=(KEY, f"bob={KEY2}", f"carol={KEY2}"))
    assert [c.summary for c in changes] == [
        "add bob to video, render",
        "authorize 1 key for bob",
    ]
    content = changes[1].actions[1].content.decode()
    assert content == KEY2 + "\n# a comment the user wrote\n" + KEY + "\n"


def test_users_converged_account_has_no_changes():
    r = FakeRemote().on(
        r"getent",
        "passwd bob:x:1001:1001::/home/bob:/bin/bash\ngroup video:x:44:bob\ngroup render:x:105:bob\n",
    )
    r.on(BOBS_KEYS, KEY + "\n")
    r.on(BOBS_MODES, "700 bob\n600 bob\n")
    assert check(r, accounts=("bob",), authorized_keys=(KEY,)) == []


@pytest.mark.parametrize(
    "stat",
    [
        "700 bob\n644 bob\n",  # authorized_keys readable by others: sshd ignores it
        "755 bob\n600 bob\n",  # ~/.ssh open to others
        "700 bob\n600 root\n",  # authorized_keys not the user's
    ],
)
def test_users_sees_key_file_modes_that_sshd_refuses(stat):
    """Issue 13: the key is there but sshd's permission rules are broken; verify_keys fails,
    so check must plan the fix (modes/owner from sshd(8) StrictModes)."""
    r = FakeRemote().on(
        r"getent",
        "passwd bob:x:1001:1001::/home/bob:/bin/bash\ngroup video:x:44:bob\ngroup render:x:105:bob\n",
    )
    r.on(BOBS_KEYS, KEY + "\n")
    r.on(BOBS_MODES, stat)
    changes = check(r, accounts=("bob",), authorized_keys=(KEY,))
    assert [c.summary for c in changes] == [
        "close /home/bob/.ssh/authorized_keys to others (sshd's rules)"
    ]
    assert changes[0].actions[0].command == (
        "chmod go-rwx -- /home/bob/.ssh && chown bob -- /home/bob/.ssh/authorized_keys"
        " && chmod go-rwx -- /home/bob/.ssh/authorized_keys"
    )


def test_users_passwordless_sudo_is_validated_by_visudo():
    r = FakeRemote().on(
        r"getent",
        "passwd bob:x:1001:1001::/home/bob:/bin/bash\ngroup video:x:44:bob\ngroup render:x:105:bob\n",
    )
    r.on(r"stat -c", (1, ""))
    (change,) = check(r, accounts=("bob",), passwordless_sudo=True)
    upload = change.actions[0]
    assert change.summary == "give bob passwordless sudo"
    assert (upload.dest, upload.mode, upload.validate) == (
        "/etc/sudoers.d/provision-bob",
        "0440",
        "visudo -cf {path}",
    )
    assert b"bob ALL=(ALL:ALL) NOPASSWD: ALL" in upload.content


CONVERGED_BOB = "passwd bob:x:1001:1001::/srv/bob:/bin/bash\ngroup video:x:44:bob\n"


@pytest.mark.parametrize("facts_file", declared.FACT_FILES)
def test_users_check_reads_only_what_it_declares_on_an_empty_host(facts_file):
    """Every declared read answers `absent` (exit 1, nothing): bob is created with his key
    and sudo, and check reads nothing it did not declare."""
    s = users.Settings(accounts=("bob",), authorized_keys=(KEY,), passwordless_sudo=True)
    f = declared.recorded(facts_file)
    changes = users.check(declared.answered(users.STEP, f, {"users": s}, declared.absent))
    assert [c.summary for c in changes] == [
        "create user bob",
        "authorize 1 key for bob",
        "give bob passwordless sudo",
    ]
    assert changes[0].actions[0].command == "useradd -m -s /bin/bash -- bob"  # no groups there


@pytest.mark.parametrize("facts_file", declared.FACT_FILES)
def test_users_check_reads_only_what_it_declares_on_a_converged_host(facts_file):
    """bob exists (home /srv/bob), has his key with sshd's modes and his sudoers file: check
    looks at every read it declares and plans nothing."""
    sudoers = sha256(render("users/sudoers.j2", name="bob"))
    dest = "/etc/sudoers.d/provision-bob"
    r = FakeRemote().on(r"getent", CONVERGED_BOB)
    r.on(BOBS_KEYS, KEY + "\n").on(BOBS_MODES, "700 bob\n600 bob\n")
    r.on(rf"stat -c .*{dest}", f"440 root root\n{sudoers}  {dest}\n")
    s = dict(accounts=("bob",), authorized_keys=(KEY,), passwordless_sudo=True)
    assert check(r, facts_file, **s) == []
    assert len(r.ran) == len(r.batches[0]) == 4  # getent, keys, their modes, sudoers


def host_side(read, tmp_path, passwd_line):
    """Run a declared read under sh here, with `getent` answering `passwd_line`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    getent = bin_dir / "getent"
    getent.write_text(f"#!/bin/sh\n[ \"$2\" = bob ] && printf '%s\\n' '{passwd_line}'\n")
    getent.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LC_ALL": "C"}
    return subprocess.run(["sh", "-c", read.command], capture_output=True, text=True, env=env)


def test_users_key_reads_find_the_home_on_the_host(tmp_path):
    """The key reads run on the host after getent: they read the home passwd names (not
    /home/NAME), and a missing account is an answer (exit 2), not an error."""
    home = tmp_path / "srv" / "bob"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh").chmod(0o700)
    (home / ".ssh" / "authorized_keys").write_text(KEY + "\n")
    (home / ".ssh" / "authorized_keys").chmod(0o600)
    line = f"bob:x:1001:1001::{home}:/bin/bash"
    keys = host_side(users.keys_read("bob"), tmp_path, line)
    assert (keys.returncode, keys.stdout) == (0, KEY + "\n")
    modes = host_side(users.key_modes_read("bob"), tmp_path, line)
    assert modes.returncode == 0 and [row.split()[0] for row in modes.stdout.splitlines()] == [
        "700",
        "600",
    ]
    gone = host_side(users.keys_read("bob"), tmp_path, "")
    assert (gone.returncode, gone.stdout) == (2, "")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("users.accounts=Alice", "not a valid user/group name"),
        ("users.accounts='bob;reboot'", "not a valid user/group name"),
        ("users.accounts=-oops", "not a valid user/group name"),
        ("users.authorized_keys=/no/such/key.pub", "neither a public key"),
        ("users.authorized_keys='ssh-ed25519 $(id)'", "neither a public key"),
        ("users.shell=bash", "not an absolute path"),
    ],
)
def test_users_bad_settings_are_refused(value, words):
    with pytest.raises(ConfigError) as info:
        load_hosts(parse(f"[g]\nbox {value}\n", Path("inventory.ini")), ["box"])
    assert info.value.message.startswith("inventory.ini:2: ")
    assert words in info.value.message


def test_users_key_file_must_hold_a_key(tmp_path):
    bad = tmp_path / "id"
    bad.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(ValueError, match="does not hold an OpenSSH public key"):
        users.read_key(str(bad))
