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
