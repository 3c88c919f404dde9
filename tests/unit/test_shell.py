"""Quoting: every value survives a round trip through the shell's own parser."""

import shlex

from hypothesis import given
from hypothesis import strategies as st

from provision import shell

HOSTILE = ["it's", '"', "$(id)", "`id`", "a\nb", "-rf", "--", "ünï ✓", "a;b", "*", "\\", ""]


@given(
    st.lists(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
    )
)
def test_cmd_round_trips_any_text(argv):
    assert shlex.split(shell.cmd(*argv)) == argv


def test_cmd_round_trips_hostile_strings():
    assert shlex.split(shell.cmd("echo", *HOSTILE)) == ["echo", *HOSTILE]


def test_sudo_wrap_runs_the_whole_command_as_root():
    wrapped = shell.sudo_wrap("a && b")
    assert shlex.split(wrapped) == ["sudo", "-n", "-H", "--", "sh", "-c", "a && b"]


def test_sudo_wrap_with_password_reads_stdin_without_prompt():
    assert shlex.split(shell.sudo_wrap("id"))[:2] == ["sudo", "-n"]
    assert shlex.split(shell.sudo_wrap("id", with_password=True))[:4] == ["sudo", "-S", "-p", ""]


def test_secret_is_masked():
    secret = shell.Secret("hunter2")
    assert shell.mask("password hunter2 given", [secret]) == "password *** given"
    assert "hunter2" not in repr(secret)


def test_apt_get_waits_for_the_lock_and_keeps_conffiles():
    argv = shlex.split(shell.apt_get("install", "htop", lock_timeout_s=42))
    assert "DPkg::Lock::Timeout=42" in argv
    assert "Dpkg::Options::=--force-confold" in argv
    assert "DEBIAN_FRONTEND=noninteractive" in argv
    assert argv[-2:] == ["install", "htop"]


def test_apt_update_waits_for_the_lists_lock_then_gives_up(tmp_path):
    """DPkg::Lock::Timeout does not cover /var/lib/apt/lists/lock: the loop does."""
    import os
    import subprocess

    from provision import shell

    fake = tmp_path / "apt-get"
    count = tmp_path / "count"
    fake.write_text(
        "#!/bin/sh\n"
        f"n=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) > {count}\n"
        'if [ "$n" -lt 1 ]; then echo "E: Could not get lock /var/lib/apt/lists/lock."; '
        "exit 100; fi\necho 'Hit:1 mirror'\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    run = subprocess.run(
        ["sh", "-c", shell.apt_get_update(30)], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0 and "Hit:1" in run.stdout and count.read_text() == "2\n"
    fake.write_text("#!/bin/sh\necho 'E: Failed to fetch x'; exit 100\n")
    run = subprocess.run(
        ["sh", "-c", shell.apt_get_update(30)], capture_output=True, text=True, env=env
    )
    assert run.returncode == 100 and "Failed to fetch" in run.stdout  # no waiting on other errors
