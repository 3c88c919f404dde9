"""ssh over real SSH on a fresh container: hardening applies and converges, and a change
that would lock us out is rolled back, by us or, when our session is gone, by the host."""

from __future__ import annotations

import dataclasses
import time

import pytest
from common import free_port, ssh

from hostrun import connection_to
from provision.changes import Guarded, Upload
from provision.errors import StepError
from provision.guard import apply
from provision.remote import connect

pytestmark = pytest.mark.container
CONF = "/etc/ssh/sshd_config.d/00-provision.conf"


def test_ssh_hardening_applies_converges_and_verifies(container, provision):
    first = provision("ssh", "--host", container.name)
    assert "restart sshd (confirmed by a fresh login)" in first.stdout
    provision("ssh", "--host", container.name, "--plan", "--detailed-exitcode", check_rc=0)
    assert "2 passed" in provision("verify", "--host", container.name, "ssh").stdout
    effective = ssh(container, "sshd -T").stdout
    assert (
        "passwordauthentication no" in effective and "kbdinteractiveauthentication no" in effective
    )


@pytest.mark.reliability("lockout")
def test_ssh_change_that_locks_us_out_is_rolled_back(container, provision):
    before = ssh(container, f"cat {CONF}").stdout
    proc = provision("ssh", "--host", container.name, "--set", "ssh.allow_users=nobody", check_rc=1)
    assert "the old configuration was restored" in proc.stderr
    assert ssh(container, f"cat {CONF}").stdout == before
    assert ssh(container, "true", user="tester").returncode == 0
    timers = ssh(container, "systemctl list-timers --all --no-legend").stdout
    assert "provision-rollback" not in timers


@pytest.mark.reliability("lockout")
def test_ssh_host_rolls_back_by_itself_when_the_session_is_gone(container):
    before = ssh(container, f"cat {CONF}").stdout
    bad = before.replace("MaxAuthTries", "AllowUsers nobody\nMaxAuthTries")
    remote = connect(connection_to(container))
    # The change ends every tester session (ours too), so only the host's timer can undo it.
    g = Guarded(
        uploads=(Upload(CONF, bad.encode()),),
        activate="systemctl restart ssh.service; pkill -KILL -u tester -x sshd || true",
        restore="systemctl restart ssh.service",
        rollback_after_s=8,
    )
    with pytest.raises(StepError):
        apply(remote, g, remote.connection, lambda c: connect(c))
    remote.close()
    deadline = time.monotonic() + 60
    while (
        time.monotonic() < deadline
        and ssh(container, "true", user="tester", check=False).returncode
    ):
        time.sleep(2)
    assert ssh(container, "true", user="tester").returncode == 0
    assert ssh(container, f"cat {CONF}").stdout == before


def test_ssh_port_change_is_confirmed_on_the_new_port(container, provision, tmp_path):
    port = free_port()
    moved = tmp_path / "moved.ini"
    moved.write_text(container.inventory.read_text())
    proc = provision(
        "ssh",
        "-i",
        str(moved),
        "--host",
        container.name,
        "--set",
        f"ssh.port={port}",
        "--update-inventory",
    )
    assert f"now at 127.0.0.1:{port}; updated {moved}:3" in proc.stderr
    assert f"ansible_port={port}" in moved.read_text()
    # The next run reaches the box through the updated inventory, and nothing is left to do.
    provision(
        "ssh",
        "-i",
        str(moved),
        "--host",
        container.name,
        "--set",
        f"ssh.port={port}",
        "--plan",
        "--detailed-exitcode",
    )
    new = connect(dataclasses.replace(connection_to(container), port=port))
    try:
        assert new.run("true", sudo=False).ok
    finally:
        new.close()
    provision("ssh", "--host", container.name)  # back to the harness's port
    listening = ssh(container, f"ss -Htln 'sport = :{port}'").stdout
    assert not listening.strip()
