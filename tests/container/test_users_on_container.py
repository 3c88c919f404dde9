"""users over real SSH on a fresh container: an account that can log in with its key and
use sudo without a password; the second run changes nothing; keys added by hand are kept."""

from __future__ import annotations

import subprocess

import pytest
from common import ssh, ssh_argv

from hostrun import connection_to

pytestmark = pytest.mark.container


def settings(container):
    pub = container.key_file.with_suffix(".pub")
    return [
        "--set",
        "users.accounts=alice",
        "--set",
        f"users.authorized_keys={pub}",
        "--set",
        "users.passwordless_sudo=true",
    ]


def test_users_account_logs_in_with_its_key_and_sudo(container, provision):
    args = settings(container)
    provision("users", "--host", container.name, *args, "--plan", "--detailed-exitcode", check_rc=3)
    first = provision("users", "--host", container.name, *args)
    assert "create user alice" in first.stdout
    provision("users", "--host", container.name, *args, "--plan", "--detailed-exitcode", check_rc=0)
    login = subprocess.run(
        [*ssh_argv(container, "alice"), "id -nG; sudo -n true && echo sudo-ok"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert login.returncode == 0, login.stderr
    assert "video" in login.stdout and "sudo-ok" in login.stdout
    verify = provision("verify", "--host", container.name, *args, "users")
    assert "4 passed" in verify.stdout


def test_users_keeps_keys_added_by_hand(container, provision):
    args = settings(container)
    extra = (
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ9w3oSx6fWz1oVZ7j0p7uQ1mJrYb7Wl4h8dL4o3nXyZ hand@made"
    )
    ssh(container, f"echo '{extra}' >> /home/alice/.ssh/authorized_keys")
    provision("users", "--host", container.name, *args, "--plan", "--detailed-exitcode", check_rc=0)
    assert extra in ssh(container, "cat /home/alice/.ssh/authorized_keys").stdout


def test_users_broken_sudoers_never_lands(container, provision):
    # A sudoers file that visudo rejects must not replace the good one (atomic + validate).
    from provision.changes import Upload
    from provision.errors import CommandError
    from provision.remote import connect

    remote = connect(connection_to(container))
    try:
        with pytest.raises(CommandError) as info:
            remote.put_atomic(
                Upload(
                    "/etc/sudoers.d/provision-alice",
                    b"alice ALL=(ALL NOPASSWD\n",
                    mode="0440",
                    validate="visudo -cf {path}",
                )
            )
    finally:
        remote.close()
    assert "failed validation" in info.value.hint
    assert ssh(container, "sudo -n true", user="alice").returncode == 0
