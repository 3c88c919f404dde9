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


def test_sudo_wrap_runs_the_whole_command_as_root_in_the_c_locale():
    # LC_ALL=C outside sudo (its own messages) and inside (sudoers' env_reset may drop it).
    assert shell.sudo_wrap("a && b") == "env LC_ALL=C sudo -n -H -- env LC_ALL=C sh -c 'a && b'"
    assert shlex.split(shell.sudo_wrap("a && b")) == [
        "env", "LC_ALL=C", "sudo", "-n", "-H", "--", "env", "LC_ALL=C", "sh", "-c", "a && b",
    ]  # fmt: skip


def test_sudo_wrap_with_password_reads_stdin_without_prompt():
    assert shell.sudo_wrap("id", with_password=True) == (
        "env LC_ALL=C sudo -S -p '' -H -- env LC_ALL=C sh -c id"
    )


def test_plain_commands_run_in_sh_in_the_c_locale():
    assert shell.plain_wrap("echo $HOME; ls") == "env LC_ALL=C sh -c 'echo $HOME; ls'"


def test_sudo_check_asks_once_ignoring_cached_credentials():
    assert shell.sudo_check() == "env LC_ALL=C sudo -S -p '' -k -- true"


def test_locale_reaches_the_command(tmp_path):
    """What the wrapped command sees: LC_ALL=C even when the login environment is German."""
    import os
    import subprocess

    env = {**os.environ, "LANG": "de_DE.UTF-8", "LC_ALL": "de_DE.UTF-8", "LC_MESSAGES": "de_DE"}
    out = subprocess.run(
        shell.plain_wrap('echo "$LC_ALL"; locale 2>/dev/null | grep ^LC_MESSAGES'),
        shell=True, capture_output=True, text=True, env=env,
    ).stdout  # fmt: skip
    assert out.splitlines() == ["C", 'LC_MESSAGES="C"']


def test_host_locked_records_what_runs_then_runs_it(tmp_path):
    """Under the lock the command's label goes to the holder file; the command itself runs
    unchanged (its own $0 and quoting)."""
    import subprocess

    text = shell.host_locked('echo "$0" it\\\'s', label="`pip install torch`")
    holder = tmp_path / "holder"
    lock = tmp_path / "lock"
    text = text.replace(shell.HOST_LOCK_HOLDER, str(holder)).replace(shell.HOST_LOCK, str(lock))
    assert text.startswith(f"flock -w 1800 -E 75 {lock} sh -c ")
    out = subprocess.run(text, shell=True, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "sh it's\n", out
    assert holder.read_text().startswith("`pip install torch` (host pid ")


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


def test_a_tagged_command_carries_its_tag_in_its_environment():
    assert (
        shell.plain_wrap("sleep 9", tag="ab12") == "env LC_ALL=C PROVISION_RUN=ab12 sh -c 'sleep 9'"
    )
    assert shell.sudo_wrap("sleep 9", tag="ab12") == (
        "env LC_ALL=C sudo -n -H -- env LC_ALL=C PROVISION_RUN=ab12 sh -c 'sleep 9'"
    )


def _tagged_pids(tag: str) -> list[int]:
    import glob

    pids = []
    for path in glob.glob("/proc/[0-9]*/environ"):
        try:
            with open(path, "rb") as f:
                if f"PROVISION_RUN={tag}".encode() in f.read().split(b"\0"):
                    pids.append(int(path.split("/")[2]))
        except OSError:
            continue
    return pids


def test_kill_tagged_stops_that_command_and_its_children_only():
    import subprocess
    import time
    import uuid

    mine, theirs = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
    tagged = subprocess.Popen(shell.plain_wrap("sleep 30 & sleep 30; wait", tag=mine), shell=True)
    other = subprocess.Popen(shell.plain_wrap("sleep 30", tag=theirs), shell=True)
    try:
        time.sleep(0.3)
        assert len(_tagged_pids(mine)) >= 3  # the shell and its two sleeps
        subprocess.run(["sh", "-c", shell.kill_tagged(mine)], check=True, timeout=10)
        assert tagged.wait(timeout=5) != 0
        time.sleep(0.2)
        assert _tagged_pids(mine) == []
        assert other.poll() is None and _tagged_pids(theirs)  # another command is left alone
    finally:
        subprocess.run(["sh", "-c", shell.kill_tagged(mine) + "; " + shell.kill_tagged(theirs)])
        tagged.wait(timeout=5)
        other.wait(timeout=5)
