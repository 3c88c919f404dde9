"""The declared-reads batch, run by the real /bin/sh here: each read's stdout, exit status and
stderr come back exactly as a plain run of that command gives them (the expectation is the
plain run, not the parser), whatever the command prints or does."""

from __future__ import annotations

import getpass
import os
import subprocess

import pytest

from provision.changes import Result
from provision.facts import reads
from provision.facts.reads import Read

ME = getpass.getuser()

COMMANDS = [
    "echo hello",
    "printf 'no newline'",
    "printf ''",
    "echo out; echo err >&2; exit 3",
    "printf 'a\\n\\n\\n'",
    "exit 0",
    "echo '@@0'; echo '@@end'; echo '@@0-rc 9'",  # marker look-alikes without the nonce
    "printf 'err without newline' >&2; false",
    "cat",  # stdin is closed: returns at once with nothing
    "cd /; pwd",  # a cd stays inside its own read
    "pwd",
    "x=1; echo ${x}",
    "test -e /nonexistent/path",
    "printf '%s' \"$PYTHONDONTWRITEBYTECODE\"",
]


def plain(command: str) -> Result:
    proc = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd="/tmp"
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def batched(commands: list[str]) -> list[Result]:
    nonce = reads.new_nonce()
    script = reads.batch_script([Read(c) for c in commands], "root", nonce)
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, cwd="/tmp")
    assert proc.returncode == 0, proc.stderr
    return reads.parse_batch(proc.stdout, len(commands), nonce)


def test_each_read_comes_back_as_a_plain_run_gives_it():
    got = batched(COMMANDS)
    for command, result in zip(COMMANDS, got, strict=True):
        expected = plain(command)
        if "PYTHONDONTWRITEBYTECODE" in command:
            expected = Result(0, "1", "")  # the batch sets it: no root-owned .pyc in a venv
        assert (result.exit_code, result.stdout, result.stderr) == (
            expected.exit_code,
            expected.stdout,
            expected.stderr,
        ), command


def test_a_read_that_exits_does_not_end_the_batch():
    got = batched(["exit 7", "echo after"])
    assert got[0].exit_code == 7 and got[1] == Result(0, "after\n", "")


def test_a_cut_off_batch_is_an_error_not_a_partial_answer():
    nonce = reads.new_nonce()
    script = reads.batch_script([Read("echo a"), Read("echo b")], "root", nonce)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout
    cut = out[: out.index(f"@@{nonce} 1")]
    with pytest.raises(reads.BatchIncomplete):
        reads.parse_batch(cut, 2, nonce)


def test_output_cannot_forge_a_boundary_without_the_nonce():
    got = batched(["echo '@@deadbeef 1'; echo '@@deadbeef-rc 0'", "echo two"])
    assert got[0].stdout == "@@deadbeef 1\n@@deadbeef-rc 0\n" and got[1].stdout == "two\n"


def test_a_read_without_sudo_runs_as_the_login_user():
    script = reads.batch_script([Read("id -un"), Read("id -un", sudo=True)], "alice", "n0")
    assert "setpriv --reuid=alice" in script and script.count("setpriv") == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_the_login_users_reads_see_what_that_user_sees():
    """Run for real as root for the account `nobody`: its ids and groups as id(1) reports them
    for a login of it, its HOME from the passwd database, the caller's locale kept."""
    import pwd

    who = "id -un; id -gn; id -Gn; echo $HOME $USER $LOGNAME; echo $LC_ALL"
    script = reads.batch_script([Read(who), Read("id -un", sudo=True)], "nobody", "n0")
    env = {**os.environ, "LC_ALL": "C"}
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env)
    user, root = reads.parse_batch(proc.stdout, 2, "n0")
    expected = subprocess.run(
        ["su", "-s", "/bin/sh", "nobody", "-c", "id -un; id -gn; id -Gn"],
        capture_output=True,
        text=True,
    ).stdout
    home = pwd.getpwnam("nobody").pw_dir
    assert user.stdout == expected + f"{home} nobody nobody\nC\n", user
    assert root.stdout == "root\n"


def test_gather_answers_each_read_once_in_one_command():
    sent = []

    def run(script: str) -> Result:
        sent.append(script)
        proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    wanted = [Read("echo a"), Read("echo b", sudo=True), Read("echo a")]
    got = reads.gather(run, wanted, ME if ME == "root" else "root")
    assert len(sent) == 1 and set(got) == {Read("echo a"), Read("echo b", sudo=True)}
    assert got[Read("echo b", sudo=True)].stdout == "b\n"
