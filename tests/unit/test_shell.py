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


# The do side's script text: each builder, run by /bin/sh on real files whose names are hostile.


def sh(command: str, cwd):
    """Run command text in /bin/sh."""
    import subprocess

    return subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, cwd=cwd)


def test_exists_and_absent_test_the_path_itself(tmp_path):
    for name in HOSTILE[:-1]:  # "" is no path
        path = tmp_path / f"d-{name}".replace("/", "_")
        assert sh(shell.exists(str(path)), tmp_path).returncode == 1
        assert sh(shell.absent(str(path)), tmp_path).returncode == 0
        path.write_text("x")
        assert sh(shell.exists(str(path)), tmp_path).returncode == 0
        assert sh(shell.absent(str(path)), tmp_path).returncode == 1
    assert sh(shell.exists(str(tmp_path)), tmp_path).returncode == 0  # a folder exists too


def test_if_runs_one_branch_and_its_status_is_the_branch_s(tmp_path):
    assert sh(shell.if_("true", "echo yes", "echo no"), tmp_path).stdout == "yes\n"
    assert sh(shell.if_("false", "echo yes", "echo no"), tmp_path).stdout == "no\n"
    run = sh(shell.if_("false", "echo yes"), tmp_path)
    assert run.stdout == "" and run.returncode == 0  # no else: nothing runs, status 0
    assert sh(shell.if_("true", "exit 7", "exit 8"), tmp_path).returncode == 7


def test_seq_runs_every_command_and_and_stops_at_a_failure(tmp_path):
    assert sh(shell.seq("echo a", "false", "", "echo b"), tmp_path).stdout == "a\nb\n"
    assert sh(shell.and_("echo a", "false", "echo b"), tmp_path).stdout == "a\n"
    assert sh(shell.or_("false", "echo b", "echo c"), tmp_path).stdout == "b\n"
    assert sh(shell.pipe("printf 'b\\na\\n'", "sort"), tmp_path).stdout == "a\nb\n"


def test_group_and_logged_keep_one_unit(tmp_path):
    # `{ a || b; } && c`: without the group, `a || b && c` would run c only after b.
    grouped = shell.and_(shell.group(shell.or_("true", "echo b")), "echo c")
    assert sh(grouped, tmp_path).stdout == "c\n"
    log = str(tmp_path / "it's a $log")
    (tmp_path / "it's a $log").write_text("from an earlier run\n")  # replaced, not appended to
    run = sh(shell.seq(shell.logged("echo out; echo err >&2; exit 3", log), "echo $?"), tmp_path)
    assert run.stdout == "3\n" and run.stderr == ""  # all of it went to the log
    assert sh(shell.logged("echo more", log, append=True), tmp_path).returncode == 0
    assert (tmp_path / "it's a $log").read_text() == "out\nerr\nmore\n"


def test_to_writes_stdout_only_unless_asked(tmp_path):
    path = str(tmp_path / "`out`")
    run = sh(shell.to(shell.group("echo a; echo b >&2"), path), tmp_path)
    assert run.stderr == "b\n" and (tmp_path / "`out`").read_text() == "a\n"
    sh(shell.to("echo c", path, append=True), tmp_path)
    assert (tmp_path / "`out`").read_text() == "a\nc\n"
    sh(shell.to("echo d", path), tmp_path)
    assert (tmp_path / "`out`").read_text() == "d\n"  # > replaces


def test_quiet_drops_errors_only(tmp_path):
    run = sh(shell.quiet(shell.cmd("sh", "-c", "echo out; echo err >&2; exit 2")), tmp_path)
    assert (run.stdout, run.stderr, run.returncode) == ("out\n", "", 2)


def test_file_text_is_one_word_with_trailing_newlines_dropped(tmp_path):
    path = tmp_path / "$(id) x"
    path.write_text("a  b\n*\n\n")
    run = sh(f"printf '[%s]' {shell.file_text(str(path))}", tmp_path)
    assert run.stdout == "[a  b\n*]"


def test_write_file_writes_the_text_exactly(tmp_path):
    text = "%s \\n $(id) `id` it's\n\n-rf\n"
    path = tmp_path / "-rf it's"
    assert sh(shell.write_file(text, str(path)), tmp_path).returncode == 0
    assert path.read_text() == text  # no printf escapes, no added newline


def test_with_path_replaces_every_placeholder_with_the_quoted_path(tmp_path):
    path = tmp_path / "a b;rm x"
    path.write_text("good\n")
    check = shell.with_path("grep -q good {path} && test -s {path}", str(path))
    assert sh(check, tmp_path).returncode == 0
    assert shell.with_path("true", str(path)) == "true"


def test_on_exit_runs_after_success_and_failure(tmp_path):
    gone = tmp_path / "staged it's"
    for last in ("true", "false"):
        gone.write_text("x")
        trap = shell.on_exit(shell.cmd("rm", "-f", "--", str(gone)))
        run = sh("\n".join(["set -e", trap, last, "echo after"]), tmp_path)
        assert not gone.exists()
        assert run.returncode == (0 if last == "true" else 1)


def test_require_exits_with_its_code_and_message_on_stderr(tmp_path):
    run = sh(
        shell.seq(
            shell.require(shell.cmd("sh", "-c", "echo checked; false"), "it's bad", 65), "echo on"
        ),
        tmp_path,
    )
    assert (run.returncode, run.stdout) == (65, "")
    assert run.stderr == "checked\nit's bad\n"  # the check's own output goes to stderr too
    run = sh(shell.seq(shell.require("true", "bad", 65), "echo on"), tmp_path)
    assert (run.returncode, run.stdout) == (0, "on\n")


def test_script_is_one_command_a_line_with_a_final_newline():
    assert shell.script("a", "b") == "a\nb\n"


def test_redact_hides_url_passwords_only():
    assert shell.redact("pip install -i https://bob:s3cr3t@pypi.example/simple x") == (
        "pip install -i https://bob:***@pypi.example/simple x"
    )
    assert shell.redact("git+https://t:abc@h/r.git and 'http://u:p@x'") == (
        "git+https://t:***@h/r.git and 'http://u:***@x'"
    )
    same = ["https://bob@host/path", "host:22", "a:b@c", "https://host:8443/x", "user@host:p"]
    for text in same:
        assert shell.redact(text) == text


def test_mask_hides_every_secret_and_skips_empty_ones():
    assert shell.mask("a hunter2 b pw c hunter2", ["hunter2", "", "pw"]) == "a *** b *** c ***"


def test_apt_get_is_exactly_the_documented_non_interactive_form():
    # apt-get(8): -y answers yes (else it aborts without a terminal), -q quiets progress;
    # apt.conf(5): DPkg::Lock::Timeout; dpkg(1): --force-confdef/--force-confold keep edits.
    assert shlex.split(shell.apt_get("install", "htop")) == [
        "env", "DEBIAN_FRONTEND=noninteractive", "NEEDRESTART_MODE=a", "apt-get", "-y", "-q",
        "-o", "DPkg::Lock::Timeout=600", "-o", "Dpkg::Options::=--force-confdef",
        "-o", "Dpkg::Options::=--force-confold", "install", "htop",
    ]  # fmt: skip


def test_host_lock_waits_for_the_holder_then_gives_up_with_75(tmp_path):
    import subprocess

    lock, holder = tmp_path / "lock", tmp_path / "holder"

    def locked(command, wait_s):
        text = shell.host_locked(command, wait_s=wait_s)
        return text.replace(shell.HOST_LOCK_HOLDER, str(holder)).replace(shell.HOST_LOCK, str(lock))

    with subprocess.Popen(["sh", "-c", locked("sleep 3", 60)]) as first:
        import time

        time.sleep(0.5)
        run = subprocess.run(["sh", "-c", locked("echo ran", 1)], capture_output=True, text=True)
        assert run.returncode == shell.LOCK_BUSY == 75 and run.stdout == ""
        assert holder.read_text().startswith("a provision command (host pid ")
        first.wait(timeout=10)


def test_the_host_lock_is_a_fixed_path_under_run_lock():
    # Two laptops, maybe with different provision versions, take turns only if they lock the
    # same file; /run/lock (FHS 3.0 5.9: lock files, a tmpfs cleared at boot) drops a stale one.
    assert shell.HOST_LOCK == "/run/lock/provision.lock"
    assert shell.HOST_LOCK_HOLDER == "/run/lock/provision.lock.holder"


def test_apt_update_asks_for_errors_on_any_failure_and_gives_up_at_the_timeout(tmp_path):
    """apt-get(8): `update --error-on=any` fails on a transient fetch error too (else it exits
    0 with stale lists). A lock that never frees ends the loop at the timeout with its rc."""
    import os
    import subprocess

    fake, args = tmp_path / "apt-get", tmp_path / "args"
    fake.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> {args}\n'
        'echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 7"; exit 100\n'
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    run = subprocess.run(
        ["sh", "-c", shell.apt_get_update(0)], capture_output=True, text=True, env=env, timeout=20
    )
    assert run.returncode == 100 and "held by process 7" in run.stdout
    (called,) = args.read_text().splitlines()  # once: the timeout (0 s) is already reached
    assert called.split()[-2:] == ["update", "--error-on=any"]
