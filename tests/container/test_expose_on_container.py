"""expose (reverse tunnel) over real SSH: a second container is the relay. After `provision all`
on the box and the relay install, ssh to the relay's forwarded port reaches the box's sshd; the
tunnel comes back after its ssh is killed and after a reboot of the box; the tunnel key cannot
open a shell on the relay, nor forward anywhere but its own port.

The containers share this machine's network namespace, so "bound to the relay's loopback" is
the same loopback as this machine's: connecting to 127.0.0.1:<remote_port> from here cannot
tell a loopback bind from a public one. The restriction is proven instead by what `ss -ltn`
inside the relay shows: 127.0.0.1:<remote_port> and no wildcard address.

The relay install runs `relay.authorize_on_relay` in-process (what `provision expose-relay`
calls: the relay side as a step run by the runner on the relay host), with the HostConfigs the
CLI would load; its transcripts go to the test's own folder.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from common import free_port, ssh, ssh_argv

from hostrun import booted, provision_runner, reboot_boot_ids

pytestmark = pytest.mark.container

REMOTE_PORT = free_port()


@pytest.fixture(scope="module")
def relay(require_tier):
    """The relay: a plain container with sshd, reached as `tester`."""
    yield from booted("container", require_tier)


@pytest.fixture(scope="module")
def box(relay, require_tier):
    """The box: expose.method=reverse-tunnel to the relay, its host key pinned."""
    ed25519 = next(
        line.split(None, 1)[1]
        for line in relay.known_hosts.read_text().splitlines()
        if " ssh-ed25519 " in line
    )
    extra = {
        "expose.method": "reverse-tunnel",
        "expose.relay": f"tester@127.0.0.1:{relay.port}",
        "expose.remote_port": str(REMOTE_PORT),
        "expose.relay_host_key": ed25519,
    }
    yield from booted("container", require_tier, extra_vars=extra)


@pytest.fixture
def provision(box, tmp_path):
    return provision_runner(box, tmp_path / "logs")


def host_config(host):
    from provision import config, inventory

    return config.load_hosts(inventory.load(host.inventory), [host.name])[0]


def through_tunnel(box, command: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    """Run a command on the box via 127.0.0.1:REMOTE_PORT (the relay's forwarded port), with
    the box's own host key (HostKeyAlias): retried until the tunnel answers."""
    argv = ssh_argv(box, "tester")
    argv[argv.index("-p") + 1] = str(REMOTE_PORT)
    argv[-1:-1] = ["-o", f"HostKeyAlias=[127.0.0.1]:{box.port}"]
    deadline = time.monotonic() + timeout_s
    while True:
        proc = subprocess.run([*argv, command], capture_output=True, text=True, timeout=30)
        if proc.returncode == 0 or time.monotonic() > deadline:
            return proc
        time.sleep(2)


def main_pid(box) -> str:
    cmd = "systemctl show -p MainPID --value provision-expose.service"
    return ssh(box, cmd).stdout.strip()


def test_tunnel_reaches_the_box_through_the_relay(box, relay, provision, tmp_path):
    from provision.steps import expose

    logs = tmp_path / "relay-logs"

    first = provision("all", "--host", box.name)
    assert "generate the tunnel key /etc/provision/expose/id_ed25519" in first.stdout
    changed, line = expose.authorize_on_relay(host_config(box), host_config(relay), log_dir=logs)
    assert changed
    assert line.startswith(
        f'restrict,port-forwarding,permitlisten="127.0.0.1:{REMOTE_PORT}",'
        f'permitopen="127.0.0.1:{REMOTE_PORT}",command="/bin/false" ssh-ed25519 '
    )
    assert line.endswith(f"provision-expose@{box.name}")
    again = expose.authorize_on_relay(host_config(box), host_config(relay), log_dir=logs)
    assert again == (False, line)
    name = ssh(box, "hostname").stdout.strip()
    proc = through_tunnel(box, "hostname")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == name
    provision("all", "--host", box.name, "--plan", "--detailed-exitcode")
    verify = provision("verify", "--host", box.name, "expose")
    assert "2 passed, 0 failed, 0 error, 1 skipped" in verify.stdout, verify.stdout
    key = ssh(box, "stat -c '%a %U' /etc/provision/expose/id_ed25519").stdout.split()
    assert key == ["600", "root"]


def test_relay_port_is_bound_to_the_relay_loopback_only(box, relay):
    listening = ssh(relay, f"ss -Hltn 'sport = :{REMOTE_PORT}'").stdout.split("\n")
    addresses = {row.split()[3] for row in listening if row.strip()}
    assert addresses == {f"127.0.0.1:{REMOTE_PORT}"}


def test_tunnel_comes_back_after_its_ssh_is_killed(box):
    before = main_pid(box)
    assert before not in ("", "0")
    ssh(box, f"kill -9 {before}")
    deadline = time.monotonic() + 60
    while main_pid(box) in (before, "0") and time.monotonic() < deadline:
        time.sleep(1)
    assert main_pid(box) not in (before, "0")
    proc = through_tunnel(box, "hostname")
    assert proc.returncode == 0, proc.stderr


def test_tunnel_comes_back_after_a_reboot_of_the_box(box, provision):
    before, after = reboot_boot_ids(box, timeout_s=120)
    assert before != after
    proc = through_tunnel(box, "cat /proc/sys/kernel/random/boot_id", timeout_s=90)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == after
    verify = provision("verify", "--host", box.name, "expose")
    assert "2 passed" in verify.stdout, verify.stdout


def test_tunnel_key_opens_no_shell_and_forwards_nowhere_else_on_the_relay(box, relay, tmp_path):
    key = tmp_path / "expose_key"
    key.write_text(ssh(box, "cat /etc/provision/expose/id_ed25519").stdout)
    key.chmod(0o600)
    argv = ssh_argv(relay, "tester")
    argv[argv.index("-i") + 1] = str(key)
    argv[-1:-1] = ["-o", "IdentitiesOnly=yes"]
    shell = subprocess.run([*argv, "echo SHELL-OPENED"], capture_output=True, text=True, timeout=30)
    assert shell.returncode != 0
    assert "SHELL-OPENED" not in shell.stdout
    # A stdio forward (-W) to the relay's own sshd: refused by permitopen.
    other = subprocess.run(
        [*argv[:-1], "-W", f"127.0.0.1:{relay.port}", argv[-1]],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "SSH-2.0" not in other.stdout
    assert other.returncode != 0 or "prohibited" in other.stderr, other.stderr
    # The one forward it may make: to its own tunnel port, which leads to the box's sshd.
    own = subprocess.run(
        [*argv[:-1], "-W", f"127.0.0.1:{REMOTE_PORT}", argv[-1]],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert own.stdout.startswith("SSH-2.0"), own.stderr
