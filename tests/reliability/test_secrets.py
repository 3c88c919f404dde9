"""Secrets and exposure: the sudo password and URL tokens never appear in argv on the host, in
transcripts, in -vv output, in the journal or in exception messages; unknown and changed host
keys are refused with the command that fixes it.

The host cases run the real CLI (subprocess) against a disposable container whose `pwtester`
needs a password for sudo, while a loop on the host captures `ps -eo args` every 0.05 s.
Each place searched is its own case, and each also asserts that it saw what it should (sudo
commands, the masked URL), so a search of an empty place cannot pass.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from common import SUDO_PASSWORD, free_port, ssh

from hostrun import booted, provision_runner
from provision import shell
from provision.errors import CommandError, ConfigError, ProvisionError
from provision.output import Transcript, error_text
from provision.remote import Connection, connect

pytestmark = pytest.mark.reliability("secrets")

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok-9f3c2e71d0"
TOKEN_URL = f"https://reader:{TOKEN}@mirror.example/simple"
PS_LOG = "/root/provision-ps.log"
# Every 0.05 s (the brief asked for at least every 0.2 s): short sudo commands are caught too.
PS_LOOP = (
    f"nohup setsid sh -c 'while :; do ps -eo args >> {PS_LOG}; sleep 0.05; done' "
    "</dev/null >/dev/null 2>&1 & echo $! > /root/provision-ps.pid"
)


# --- in-process: exception messages, transcripts and the sudo wrapper ----------------------


def local_remote(log=None, password: str | None = None):
    secret = shell.Secret(password) if password else None
    conn = Connection(host="local", addr="localhost", local=True, sudo_password=secret)
    return connect(conn, log=log)


def test_password_not_in_command_error_nor_transcript(tmp_path):
    transcript = Transcript(tmp_path, "local", [SUDO_PASSWORD])
    remote = local_remote(transcript.write, SUDO_PASSWORD)
    with pytest.raises(CommandError) as info:
        remote.run(f"echo {SUDO_PASSWORD}; echo {SUDO_PASSWORD} >&2; exit 3", sudo=False)
    transcript.close()
    exc = info.value
    shown = [str(exc), exc.message, exc.command, exc.output, error_text(exc)]
    assert exc.returncode == 3 and "***" in exc.message
    assert all(SUDO_PASSWORD not in text for text in shown)
    log = transcript.path.read_text()
    assert "exit 3" in log and SUDO_PASSWORD not in log


def test_token_not_in_command_error_nor_transcript(tmp_path):
    transcript = Transcript(tmp_path, "local", [])
    remote = local_remote(transcript.write)
    with pytest.raises(CommandError) as info:
        remote.run(shell.cmd("sh", "-c", 'echo "$0" >&2; exit 4', TOKEN_URL), sudo=False)
    transcript.close()
    exc = info.value
    assert "reader:***@mirror.example" in exc.message
    for text in (str(exc), exc.message, exc.hint, error_text(exc), transcript.path.read_text()):
        assert TOKEN not in text


def test_token_not_in_config_errors():
    exc = ConfigError(f"pytorch.index_url: {TOKEN_URL!r} is odd", f"try {TOKEN_URL}", "--set x")
    assert TOKEN not in str(exc) and TOKEN not in exc.hint and TOKEN not in error_text(exc)
    assert "reader:***@" in exc.message
    assert TOKEN not in ProvisionError(TOKEN_URL).message


def test_sudo_password_goes_to_stdin_never_into_the_command_line():
    remote = local_remote(password=SUDO_PASSWORD)
    remote.is_root = False
    line, stdin = remote.wrap("apt-get update", sudo=True)
    assert SUDO_PASSWORD not in line and "-S" in line.split()
    assert stdin == SUDO_PASSWORD + "\n"


# --- on a real host: ps, transcripts, -vv output, journal, host keys -----------------------


@pytest.fixture(scope="module")
def host(require_tier):
    """A fresh container for this module."""
    yield from booted("container", require_tier)


@pytest.fixture(scope="module")
def runs(host, tmp_path_factory):
    """Run provision as pwtester (sudo with a password) with -vv while ps is captured; then
    gather every place a secret could end up."""
    work = tmp_path_factory.mktemp("secrets")
    inventory = work / "pw.ini"
    inventory.write_text(
        host.inventory.read_text().replace("ansible_user=tester", "ansible_user=pwtester")
    )
    provision = provision_runner(host, work / "logs")
    # This checkout's provision, whatever `pip install -e` points at.
    env = {"PROVISION_SUDO_PASSWORD": SUDO_PASSWORD, "PYTHONPATH": str(ROOT)}
    ssh(host, PS_LOOP)
    time.sleep(0.3)
    try:
        users = provision(
            "users", "-i", str(inventory), "--host", host.name, "-vv",
            "--set", "users.accounts=alice", "--set", "users.passwordless_sudo=true",
            env=env,
        )  # fmt: skip
        verify = provision("verify", "-i", str(inventory), "--host", host.name, "users", "-vv",
                           "--set", "users.accounts=alice", "--set", "users.passwordless_sudo=true",
                           env=env)  # fmt: skip
        plan = provision(
            "pytorch", "--plan", "-vv", "-i", str(inventory), "--host", host.name,
            "--set", "pytorch.enabled=true", "--set", "pytorch.index=cpu",
            "--set", "conda.enabled=false", "--set", f"pytorch.index_url={TOKEN_URL}",
            env=env,
        )  # fmt: skip
    finally:
        time.sleep(0.3)
        ssh(host, "kill $(cat /root/provision-ps.pid); sleep 0.2; rm -f /root/provision-ps.pid")
    ps = ssh(host, f"cat {PS_LOG}").stdout
    journal = ssh(host, "journalctl -b --no-pager -q -o cat", timeout=120).stdout
    logs = "".join(p.read_text() for p in sorted((work / "logs").glob("*.log")))
    return {
        "output": "".join(p.stdout + p.stderr for p in (users, verify)),
        "plan": plan.stdout + plan.stderr,
        "ps": ps,
        "journal": journal,
        "logs": logs,
        "inventory": inventory,
        "provision": provision,
        "env": {"PYTHONPATH": str(ROOT)},
    }


def test_password_not_in_argv_on_the_host(runs):
    assert "sudo -S" in runs["ps"], "ps saw no sudo command: the search would prove nothing"
    assert SUDO_PASSWORD not in runs["ps"]


def test_password_not_in_transcripts(runs):
    assert "$ sudo " in runs["logs"]  # the commands really went through sudo
    assert SUDO_PASSWORD not in runs["logs"]


def test_password_not_in_vv_output(runs):
    assert "sudo " in runs["output"] and "| " in runs["output"]  # -vv: commands and output
    assert SUDO_PASSWORD not in runs["output"]


def test_password_not_in_the_journal(runs):
    assert "pwtester" in runs["journal"]  # sudo logged its sessions
    assert SUDO_PASSWORD not in runs["journal"]


def test_token_not_in_plan_output(runs):
    assert "reader:***@mirror.example" in runs["plan"]  # the URL is shown, masked
    assert TOKEN not in runs["plan"]


def test_token_not_in_transcripts_ps_or_journal(runs):
    assert "# provision plan" in runs["logs"]
    for place in ("logs", "ps", "journal"):
        assert TOKEN not in runs[place], place


def test_unknown_host_key_is_refused_with_the_keyscan_hint(host, runs, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inventory = tmp_path / "strange.ini"
    inventory.write_text(host.inventory.read_text().replace(str(host.known_hosts), str(empty)))
    proc = runs["provision"](
        "facts", "-i", str(inventory), "--host", host.name, env=runs["env"], check_rc=1
    )
    assert "unknown host key" in proc.stderr and "ssh-keyscan" in proc.stderr
    assert empty.read_text() == ""  # nothing was trusted


def test_changed_host_key_is_refused(host, runs, tmp_path):
    other = tmp_path / "known_hosts"
    fake = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    other.write_text(f"[127.0.0.1]:{host.port} ssh-ed25519 {fake}\n")
    inventory = tmp_path / "changed.ini"
    inventory.write_text(host.inventory.read_text().replace(str(host.known_hosts), str(other)))
    proc = runs["provision"](
        "facts", "-i", str(inventory), "--host", host.name, "--accept-new-host-key",
        env=runs["env"], check_rc=1,
    )  # fmt: skip
    assert "has CHANGED" in proc.stderr and "ssh-keygen -R" in proc.stderr


# --- exposure: verify's checks of listeners and file modes ---------------------------------

SS_OUTPUT = """\
LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=601,fd=3))
LISTEN 0 128 [::]:22 [::]:* users:(("sshd",pid=601,fd=4))
LISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:* users:(("systemd-resolve",pid=420,fd=14))
LISTEN 0 2048 127.0.0.1:6006 0.0.0.0:* users:(("tensorboard",pid=900,fd=9))
LISTEN 0 128 [::ffff:127.0.0.1]:8080 *:* users:(("java",pid=77,fd=5))
LISTEN 0 5 0.0.0.0:8888 0.0.0.0:* users:(("jupyter-lab",pid=1200,fd=6))
LISTEN 0 64 *:2049 *:*
"""


def test_exposure_check_names_what_listens_beyond_loopback():
    from provision.steps import ssh as ssh_step

    owned, unowned = ssh_step.exposed_listeners(SS_OUTPUT, ssh_step.Settings())
    assert owned == ['0.0.0.0:8888 users:(("jupyter-lab",pid=1200,fd=6))']
    assert unowned == ["*:2049"]
    opted_in = ssh_step.Settings(open_ports=("8888", "2049"))
    assert ssh_step.exposed_listeners(SS_OUTPUT, opted_in) == ([], [])


def verify_line(output: str, check: str) -> str:
    """The `host step status check[: message]` line of one verify check."""
    return next((line for line in output.splitlines() if check in line), "")


def test_sudoers_drop_in_is_checked_root_0440(runs):
    line = verify_line(runs["output"], "the sudoers drop-ins are root:root 0440")
    assert " passed " in line, runs["output"]


def test_exposure_check_fails_for_a_listener_on_every_address(host, runs):
    """A process inside the box listening on 0.0.0.0 fails verify, named with its port."""
    check = "nothing but sshd (and ssh.open_ports) listens on a non-loopback TCP address"
    server = (
        "nohup setsid python3 -m http.server --bind 0.0.0.0 48765 </dev/null >/dev/null 2>&1 & "
        "echo $! > /root/exposed.pid; sleep 1"
    )
    ssh(host, server)
    try:
        proc = runs["provision"](
            "verify", "--host", host.name, "ssh", env=runs["env"], check_rc=None
        )
    finally:
        ssh(host, "kill $(cat /root/exposed.pid); rm -f /root/exposed.pid")
    line = verify_line(proc.stdout, check)
    assert " failed " in line and "0.0.0.0:48765" in line and "python3" in line, proc.stdout
    opted = runs["provision"](
        "verify", "--host", host.name, "ssh", "--set", "ssh.open_ports=48765",
        env=runs["env"], check_rc=None,
    )  # fmt: skip
    line = verify_line(opted.stdout, check)
    assert line and ":48765" not in line and " failed " not in line, opted.stdout


# --- a secret file's old content: never read, shown or transcribed ------------------------

# A made-up WireGuard private key (32 random bytes, base64): searched for everywhere.
WG_KEY = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
# A file base manages (timesyncd is not installed on the container: nothing reads it).
PLANTED = "/etc/systemd/timesyncd.conf.d/provision.conf"


def plan_places(host, tmp_path, content: str, mode: str) -> dict[str, str]:
    """Plant the file, then run `base --plan --diff -vv` and a plain `--plan`: every place
    the old content could end up (stdout, stderr, transcripts)."""
    printf = content.replace("\n", "\\n")
    ssh(host, f"mkdir -p {Path(PLANTED).parent} && printf '%b' '{printf}' > {PLANTED}")
    ssh(host, f"chmod {mode} {PLANTED}")
    provision = provision_runner(host, tmp_path / "logs")
    env = {"PYTHONPATH": str(ROOT)}
    try:
        diff = provision("base", "--host", host.name, "--plan", "--diff", "-vv", env=env)
        plain = provision("base", "--host", host.name, "--plan", env=env)
    finally:
        ssh(host, f"rm -f {PLANTED}")
    logs = "".join(p.read_text() for p in sorted((tmp_path / "logs").glob("*.log")))
    return {
        "diff_out": diff.stdout,
        "vv_err": diff.stderr,
        "plain_out": plain.stdout + plain.stderr,
        "logs": logs,
    }


@pytest.mark.parametrize(
    "mode, content, why",
    [
        ("600", f"[Interface]\nPrivateKey = {WG_KEY}\n", "the host's copy is mode 600"),
        (
            "644",
            f"-----BEGIN OPENSSH PRIVATE KEY-----\n{WG_KEY}\n-----END OPENSSH PRIVATE KEY-----\n",
            "the host's copy holds key material",
        ),
    ],
    ids=["mode-0600", "key-material-0644"],
)
def test_secret_file_content_not_in_diff_vv_or_transcripts(host, tmp_path, mode, content, why):
    places = plan_places(host, tmp_path, content, mode)
    # The searches are not of empty places: -vv printed the probes of the file, the
    # transcripts hold both plans, the plan says the file changes.
    assert f"sha256sum -- {PLANTED}" in places["vv_err"]
    assert places["logs"].count("# provision plan") == 2
    assert f"update {PLANTED}" in places["plain_out"]
    for where, text in places.items():
        assert WG_KEY not in text, where
        assert "PRIVATE KEY-----" not in text and "PrivateKey" not in text, where
    # ... and the diff says that the file differs and why its content is not shown.
    assert f"{PLANTED} differs (sha256 " in places["diff_out"], places["diff_out"]
    assert f"not shown: {why}" in places["diff_out"]


# --- expose: an existing private key is kept, its public half derived -----------------------

TUNNEL_KEY = "/etc/provision/expose/id_ed25519"


def test_tunnel_private_key_without_public_key_is_kept_and_the_public_key_derived(host, tmp_path):
    """private key present, .pub missing: the plan derives the public key (no new pair), and
    applying it leaves the private key byte for byte as it was."""
    ssh(
        host,
        "install -d -m 0700 /etc/provision/expose && "
        f"ssh-keygen -q -t ed25519 -N '' -C planted -f {TUNNEL_KEY} && rm -f {TUNNEL_KEY}.pub",
    )
    before = ssh(host, f"sha256sum {TUNNEL_KEY}").stdout.split()[0]
    expected = ssh(host, f"ssh-keygen -y -f {TUNNEL_KEY}").stdout.split()[:2]  # OpenSSH's own
    provision = provision_runner(host, tmp_path / "logs")
    sets = [
        "--set", "expose.method=reverse-tunnel",
        "--set", f"expose.relay=tunnel@127.0.0.1:{free_port()}",
        "--set", f"expose.relay_host_key={expected[0]} {expected[1]}",
    ]  # fmt: skip
    env = {"PYTHONPATH": str(ROOT)}
    try:
        plan = provision("expose", "--host", host.name, "--plan", *sets, env=env)
        provision("expose", "--host", host.name, *sets, env=env, check_rc=None)
        after = ssh(host, f"sha256sum {TUNNEL_KEY}").stdout.split()[0]
        public = ssh(host, f"cat {TUNNEL_KEY}.pub").stdout.split()[:2]
    finally:
        ssh(
            host,
            "systemctl disable --now provision-expose.service 2>/dev/null; "
            "rm -rf /etc/provision/expose /etc/systemd/system/provision-expose.service; "
            "systemctl daemon-reload",
        )
    assert after == before, "the private key was replaced"
    assert public == expected
    assert f"derive {TUNNEL_KEY}.pub from the existing private key" in plan.stdout, plan.stdout
    assert "generate the tunnel key" not in plan.stdout
