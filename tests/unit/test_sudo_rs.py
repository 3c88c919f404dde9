"""sudo-rs, Ubuntu 26.04's default sudo: its refusals read like sudo's (issue 19 §4).

The inputs are sudo-rs's own texts, quoted from its source (trifectatechfoundation/sudo-rs at
e5a01fd7a20a5bfe5da6bc1b5cf7628e721c35c8), each printed with the "sudo: " prefix of its logger
(src/sudo/mod.rs:65) and diagnostic! macro (src/sudo/diagnostic.rs):
- src/common/error.rs:91  `sudo -n` where a password is needed: "interactive authentication is
  required" (sudo: "a password is required");
- src/sudo/pam.rs:127     a wrong password, before the next try: "Authentication failed, try
  again." (sudo: "Sorry, try again.");
- src/common/error.rs:122 the tries used up: "maximum 3 incorrect authentication attempts"
  (sudo: "3 incorrect password attempts");
- src/common/error.rs:89  a user sudoers does not allow: "I'm sorry tester. I'm afraid I can't
  do that" (sudo: "tester is not in the sudoers file");
- src/pam/error.rs:214, :227 "Account validation failure, is your account locked?", "A terminal
  is required to authenticate" (sudo words both in lower case).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from provision import hints, sudoers
from provision.changes import Result

NONINTERACTIVE = "sudo: interactive authentication is required\n"
WRONG = "sudo: Authentication failed, try again.\n"
USED_UP = "sudo: maximum 3 incorrect authentication attempts\n"
NOT_ALLOWED = "sudo: I'm sorry tester. I'm afraid I can't do that\n"


@pytest.mark.parametrize(
    "stderr",
    [
        NONINTERACTIVE,
        WRONG + USED_UP,
        NOT_ALLOWED,
        "sudo: Account validation failure, is your account locked?\n",
        "sudo: A terminal is required to authenticate\n",
    ],
)
def test_a_sudo_rs_refusal_is_no_answer_to_a_probe(stderr):
    """A read refused by sudo-rs must not pass for the host's answer (an empty file list...)."""
    why = sudoers.probe_failure(Result(1, "", stderr), sudo=True)
    assert why.startswith("sudo refused to run it (sudo: ") and why.endswith(")"), why
    assert why[len("sudo refused to run it (") : -1] in stderr  # the words sudo-rs said


def test_a_command_that_prints_no_sudo_words_is_an_answer():
    assert (
        sudoers.probe_failure(Result(1, "", "grep: x: No such file or directory\n"), sudo=True)
        == ""
    )


def test_a_wrong_password_is_seen_and_latched():
    """transport latches the password after this, so it is never sent again (pam_faillock)."""
    assert sudoers.password_refused(Result(1, "", WRONG + USED_UP))
    assert sudoers.password_refused(
        Result(1, "", "sudo: maximum 1 incorrect authentication attempts\n")
    )
    assert not sudoers.password_refused(Result(1, "", NONINTERACTIVE))
    assert not sudoers.password_refused(Result(0, "", ""))


def test_the_password_checks_message_names_the_refusal():
    refused = sudoers.check_error("box", "tester", 1, WRONG)
    assert "was refused; provision does not try it again" in str(refused)
    used_up = sudoers.check_error("box", "tester", 1, USED_UP)
    assert "was refused" in str(used_up)
    denied = sudoers.check_error("box", "tester", 1, NOT_ALLOWED)
    assert "tester may not use sudo there (sudo: I'm sorry tester." in str(denied)


def test_hints_read_sudo_rs_words():
    need = hints.command_hint(Result(1, "", NONINTERACTIVE))
    assert need == "sudo needs a password here: use --ask-sudo-pass or PROVISION_SUDO_PASSWORD"
    assert hints.command_hint(Result(1, "", WRONG + USED_UP)) == "the sudo password was refused"


# Like sudo-rs -S: reads a line; on a wrong one says "Authentication failed, try again." and
# reads again (src/sudo/pam.rs:108-129: the loop asks PAM once more).
FAKE_SUDO_RS = """#!/bin/sh
IFS= read -r pw
echo "$pw" >> {log}
if [ "$pw" = right ]; then exit 0; fi
echo 'sudo: Authentication failed, try again.' >&2
IFS= read -r pw
echo "second read: $pw" >> {log}
echo 'sudo: maximum 3 incorrect authentication attempts' >&2
exit 1
"""


def test_the_password_check_makes_one_attempt_with_sudo_rs(tmp_path):
    log = tmp_path / "reads"
    fake = tmp_path / "sudo"
    fake.write_text(FAKE_SUDO_RS.format(log=log))
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    run = subprocess.run(
        ["sh", "-c", sudoers.CHECK_SCRIPT], input="wrong\n", capture_output=True, text=True,
        env=env, timeout=30,
    )  # fmt: skip
    assert run.returncode == 1
    assert log.read_text() == "wrong\n"  # killed before a second read: one failure counted
    assert "was refused" in str(sudoers.check_error("box", "tester", 1, run.stderr))
