"""provision push/pull: the exact rsync and ssh command lines, hostile paths kept as data,
bad input refused (exit 2) before any connection, failure hints, and a real rsync run
between two local directories with the same flags."""

from __future__ import annotations

import base64
import hashlib
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from provision import sync
from provision.cli import cli
from provision.errors import ConfigError
from provision.remote import Connection
from provision.sync import SyncOptions

CONN = Connection(
    host="mybox",
    addr="10.0.0.5",
    port=2222,
    user="me",
    key_file="/home/me/.ssh/id_ed25519",
    known_hosts="/home/me/lab/known_hosts",
)
SSH = [
    "ssh",
    "-p",
    "2222",
    "-l",
    "me",
    "-i",
    "/home/me/.ssh/id_ed25519",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "UserKnownHostsFile=/home/me/lab/known_hosts",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=15",
    "-o",
    "ServerAliveInterval=15",
]
E = (
    "ssh -p 2222 -l me -i /home/me/.ssh/id_ed25519 -o IdentitiesOnly=yes "
    "-o UserKnownHostsFile=/home/me/lab/known_hosts -o StrictHostKeyChecking=yes "
    "-o BatchMode=yes -o ConnectTimeout=15 -o ServerAliveInterval=15"
)
HOSTILE = ["sp ace", "it's", 'say "hi"', "$(touch pwned)", "-rf", "a:b", "naïve 日本", "`id`;x"]


def rsync_split(command: str) -> list[str]:
    """How rsync splits its -e value (main.c do_cmd): spaces separate, single or double
    quotes group, a doubled quote inside quotes is a literal one, no backslash escapes."""
    args, i, n = [], 0, len(command)
    while i < n:
        if command[i] == " ":
            i += 1
            continue
        arg, quote = "", ""
        while i < n and (command[i] != " " or quote):
            ch = command[i]
            if ch in "'\"":
                if not quote:
                    quote = ch
                    i += 1
                    continue
                if ch == quote:
                    i += 1
                    if i < n and command[i] == quote:
                        arg += quote
                        i += 1
                        continue
                    quote = ""
                    continue
            arg += ch
            i += 1
        assert not quote, f"missing trailing {quote}"
        args.append(arg)
    return args


def test_ssh_argv_carries_every_connection_setting():
    assert sync.ssh_argv(CONN) == SSH


def test_ssh_argv_minimal_and_accept_new():
    conn = Connection(host="b", addr="b.lan", accept_new_host_key=True, connect_timeout_s=5)
    assert sync.ssh_argv(conn) == [
        "ssh",
        "-p",
        "22",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "ServerAliveInterval=15",
    ]


def test_key_and_known_hosts_paths_expand_the_home_directory(monkeypatch):
    monkeypatch.setenv("HOME", "/home/you")
    conn = Connection(host="b", addr="b", key_file="~/.ssh/k", known_hosts="~/kh")
    argv = sync.ssh_argv(conn)
    assert "/home/you/.ssh/k" in argv and "UserKnownHostsFile=/home/you/kh" in argv


def test_push_argv_exact(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    argv = sync.push_argv(CONN, ["data"], "/data/project", SyncOptions())
    assert argv == [
        "rsync",
        "-a",
        "-s",
        "--partial-dir=.rsync-partial",
        "-h",
        "--mkpath",
        "--info=progress2",
        "-e",
        E,
        "--",
        "./data",
        "10.0.0.5:/data/project",
    ]
    assert rsync_split(argv[argv.index("-e") + 1]) == SSH


def test_pull_argv_exact_not_a_tty_with_delete_dry_run_and_excludes():
    options = SyncOptions(delete=True, dry_run=True, progress=False, excludes=("*.tmp", "-x y"))
    argv = sync.pull_argv(CONN, ["/data/project/results"], "results", options)
    assert argv == [
        "rsync",
        "-a",
        "-s",
        "--partial-dir=.rsync-partial",
        "-h",
        "--mkpath",
        "--info=stats2",
        "--delete",
        "--dry-run",
        "--itemize-changes",
        "--exclude=*.tmp",
        "--exclude=-x y",
        "-e",
        E,
        "--",
        "10.0.0.5:/data/project/results",
        "./results",
    ]


def test_no_delete_unless_asked(tmp_path):
    argv = sync.push_argv(CONN, [str(tmp_path)], "/d", SyncOptions())
    assert not [a for a in argv if a.startswith("--del")]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_stay_single_arguments_after_the_end_of_options(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text("x")
    remote = f"/data/{name}/dir"
    argv = sync.push_argv(CONN, [name], remote, SyncOptions())
    end = argv.index("--")
    assert argv[end + 1 :] == [f"./{name}", f"10.0.0.5:{remote}"]
    assert "-s" in argv[:end]  # paths travel inside the rsync protocol, not the remote shell
    pulled = sync.pull_argv(CONN, [remote], name, SyncOptions())
    assert pulled[pulled.index("--") + 1 :] == [f"10.0.0.5:{remote}", f"./{name}"]


def test_hostile_key_and_known_hosts_paths_survive_rsync_splitting():
    conn = Connection(
        host="b",
        addr="b",
        user="o'brien",
        key_file='/keys/my key\'s "x" $(id)',
        known_hosts="/k h/known_hosts",
    )
    e = sync.rsync_argv(conn, ["./a"], "b:/x", SyncOptions())
    value = e[e.index("-e") + 1]
    assert rsync_split(value) == sync.ssh_argv(conn)
    assert "\\" not in value  # rsync does not read backslash escapes


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data", "./data"),
        ("data/", "./data/"),
        ("/abs/x", "/abs/x"),
        ("./x", "./x"),
        ("../x", "../x"),
        (".", "."),
        ("-e", "./-e"),
        ("host:path", "./host:path"),
    ],
)
def test_local_paths_cannot_be_options_or_remotes(path, expected):
    assert sync.local_path(path) == expected


def test_ipv6_address_in_brackets_and_local_host_without_ssh(tmp_path):
    v6 = Connection(host="b", addr="fd00::5")
    assert sync.remote_spec(v6, "/d") == "[fd00::5]:/d"
    local = Connection(host="here", addr="localhost", local=True)
    argv = sync.push_argv(local, [str(tmp_path)], "/srv/d", SyncOptions())
    assert "-e" not in argv and argv[-2:] == [str(tmp_path), "/srv/d"]


def test_refuses_a_missing_source_and_relative_remote_paths(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as missing:
        sync.push_argv(CONN, [str(tmp_path / "nope")], "/d", SyncOptions())
    assert missing.value.exit_code == 2
    with pytest.raises(ConfigError, match="not absolute"):
        sync.push_argv(CONN, [str(tmp_path)], "data/project", SyncOptions())
    with pytest.raises(ConfigError, match="not absolute"):
        sync.pull_argv(CONN, ["~/results"], "r", SyncOptions())
    with pytest.raises(ConfigError, match="newline"):
        sync.pull_argv(CONN, ["/a\nb"], "r", SyncOptions())


def test_a_dangling_symlink_is_still_a_source(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    assert sync.push_argv(CONN, [str(tmp_path / "link")], "/d", SyncOptions())[-2:] == [
        str(tmp_path / "link"),
        "10.0.0.5:/d",
    ]


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("rsync  version 3.2.7  protocol version 31\nCopyright (C) 1996-2022", (3, 2, 7)),
        ("rsync  version v3.4.1  protocol version 32\n", (3, 4, 1)),
        ("openrsync: protocol version 29\nrsync version 2.6.9 compatible\n", (2, 6, 9)),
        ("something else", None),
    ],
)
def test_local_rsync_version(text, version):
    assert sync.local_rsync_version(text) == version


def test_old_or_missing_local_rsync_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(sync.shutil, "which", lambda _name: None)
    with pytest.raises(ConfigError, match="not installed on this machine") as exc:
        sync.check_local_rsync()
    assert "brew install rsync" in exc.value.hint
    old = tmp_path / "rsync"
    old.write_text("#!/bin/sh\necho 'rsync  version 2.6.9  protocol version 29'\n")
    old.chmod(0o755)
    monkeypatch.setattr(sync.shutil, "which", lambda _name: str(old))
    with pytest.raises(ConfigError, match=r"too old .*2\.6\.9"):
        sync.check_local_rsync()


@pytest.mark.parametrize(
    ("stderr", "hint"),
    [
        ("bash: line 1: rsync: command not found\nrsync: connection unexpectedly closed", "base"),
        ("sh: 1: rsync: not found\n", "apt-get install rsync"),
        (
            "No ED25519 host key is known for [10.0.0.5]:2222 and you have requested strict "
            "checking.\nHost key verification failed.\n",
            "--accept-new-host-key",
        ),
        ("me@10.0.0.5: Permission denied (publickey).\n", "ansible_ssh_private_key_file"),
        ('rsync: [Receiver] mkdir "/data/x" failed: Permission denied (13)', "may not write"),
        ("ssh: connect to host 10.0.0.5 port 2222: Connection refused", "sshd is running"),
        ("rsync: something new", ""),
    ],
)
def test_failure_hints(stderr, hint):
    got = sync.failure_hint("mybox", CONN, stderr)
    assert hint in got if hint else got == ""


def test_run_shows_stderr_and_raises_with_the_hint():
    lines = []
    script = "import sys; sys.stderr.write('sh: 1: rsync: not found\\n'); sys.exit(12)"
    with pytest.raises(sync.SyncError, match="mybox: rsync exited 12") as exc:
        sync.run("mybox", CONN, [sys.executable, "-c", script], echo=lines.append)
    assert lines == ["sh: 1: rsync: not found"]
    assert "provision base --host mybox" in exc.value.hint


# --- real rsync, here, with the same flags --------------------------------------------------


def tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.mark.skipif(not sync.shutil.which("rsync"), reason="needs rsync on this machine")
def test_real_rsync_round_trip_with_hostile_names_between_local_dirs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "src tree"
    (src / "empty dir").mkdir(parents=True)
    for name in HOSTILE:
        (src / name).write_bytes(os.urandom(64) + name.encode())
    (src / "link → it").symlink_to("it's")
    local = Connection(host="here", addr="localhost", local=True)
    quiet = SyncOptions(progress=False)
    argv = sync.push_argv(local, ["src tree/"], str(tmp_path / "dest dir"), quiet)
    sync.run("here", local, argv, echo=print)
    assert tree_digest(tmp_path / "dest dir") == tree_digest(src)
    # --delete only when asked
    (tmp_path / "dest dir" / "extra").write_text("x")
    sync.run("here", local, argv, echo=print)
    assert (tmp_path / "dest dir" / "extra").exists()
    deleting = sync.push_argv(local, ["src tree/"], str(tmp_path / "dest dir"),
                              SyncOptions(progress=False, delete=True))  # fmt: skip
    sync.run("here", local, deleting, echo=print)
    assert tree_digest(tmp_path / "dest dir") == tree_digest(src)


# --- the commands: bad input is refused before any connection -----------------------------

INV = "[lab]\nbox1 ansible_host=192.0.2.1\nbox2 ansible_host=192.0.2.2\n"


def invoke(tmp_path, monkeypatch, args):
    def no_rsync(*_a, **_k):
        raise AssertionError("rsync must not run")

    monkeypatch.setattr(sync.subprocess, "Popen", no_rsync)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(INV)
    return CliRunner().invoke(cli, [*args[:1], "-i", str(inventory), *args[1:]])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pull", "--host", "lab", "/data/r", "r"], "pull takes one host, not 2 (box1, box2)"),
        (["pull", "--host", "box1", "data/r", "r"], "is not absolute"),
        (["push", "--host", "box1", "NOPE", "/data"], "does not exist"),
        (["push", "--host", "box1", ".", "data"], "is not absolute"),
        (["push", "--host", "box1", "/data"], "push needs LOCAL... REMOTE_DIR"),
        (["pull", "--host", "box1", "/data"], "pull needs REMOTE... LOCAL_DIR"),
    ],
)
def test_bad_input_exits_2_before_connecting(tmp_path, monkeypatch, args, message):
    result = invoke(tmp_path, monkeypatch, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_push_runs_rsync_per_host_and_exits_1_when_one_fails(tmp_path, monkeypatch):
    ran = []

    def fake_run(host, conn, argv, echo=None):
        ran.append((host, argv[-2:]))
        if host == "box2":
            raise sync.SyncError(f"{host}: rsync exited 23")

    monkeypatch.setattr(sync, "run", fake_run)
    monkeypatch.setattr(sync, "check_local_rsync", lambda: (3, 2, 7))
    result = invoke(tmp_path, monkeypatch, ["push", "--host", "lab", str(tmp_path), "/data/p"])
    assert result.exit_code == 1, result.output
    assert ran == [
        ("box1", [str(tmp_path), "192.0.2.1:/data/p"]),
        ("box2", [str(tmp_path), "192.0.2.2:/data/p"]),
    ]
    assert "box2: rsync exited 23" in result.output


@pytest.mark.parametrize(("version", "mkpath"), [((3, 1, 3), False), ((3, 2, 3), True)])
def test_mkpath_only_with_a_local_rsync_that_has_it(monkeypatch, version, mkpath):
    monkeypatch.setattr(sync, "check_local_rsync", lambda: version)
    options = sync.with_local_rsync(SyncOptions())
    assert ("--mkpath" in sync.rsync_argv(CONN, ["./a"], "b:/c", options)) is mkpath
    assert not sync.with_local_rsync(SyncOptions(mkpath=False)).mkpath


# --- a changed host key (issue 13 §8) ---------------------------------------------------------


def keygen(path: Path) -> tuple[str, str]:
    """A fresh ed25519 key pair made by ssh-keygen: (base64 blob, `ssh-keygen -lf` fingerprint)."""
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    listed = subprocess.run(["ssh-keygen", "-lf", f"{path}.pub"], capture_output=True, text=True)
    return Path(f"{path}.pub").read_text().split()[1], listed.stdout.split()[1]


def test_fingerprints_are_openssh_s(tmp_path):
    from provision import hostkeys

    blob, expected = keygen(tmp_path / "k")
    assert expected.startswith("SHA256:") and hostkeys.fingerprint(blob) == expected


def changed_key_stderr(new_fp: str, known: Path, line: int) -> str:
    """OpenSSH 9.2's words for a changed key under StrictHostKeyChecking=yes."""
    return f"""@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the ED25519 key sent by the remote host is
{new_fp}.
Please contact your system administrator.
Add correct host key in {known} to get rid of this message.
Offending ED25519 key in {known}:{line}
Host key for [10.0.0.5]:2222 has changed and you have requested strict checking.
Host key verification failed.
rsync: connection unexpectedly closed (0 bytes received so far) [sender]
"""


def test_push_hint_for_a_changed_key_has_both_fingerprints_and_never_accept_new(tmp_path):
    old_blob, old_fp = keygen(tmp_path / "old")
    new_blob, new_fp = keygen(tmp_path / "new")
    known = tmp_path / "known_hosts"
    known.write_text(f"other ssh-ed25519 {new_blob}\n[10.0.0.5]:2222 ssh-ed25519 {old_blob}\n")
    conn = Connection(host="mybox", addr="10.0.0.5", port=2222, known_hosts=str(known))
    hint = sync.failure_hint("mybox", conn, changed_key_stderr(new_fp, known, 2))
    assert f"{known} has {old_fp} ({known}:2), the host showed {new_fp}" in hint, hint
    assert "accept-new" not in hint
    assert f"ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` must print {new_fp}" in hint
    assert f"`ssh-keygen -R '[10.0.0.5]:2222' -f {known}`" in hint
    assert f"`ssh-keyscan -p 2222 -t ed25519 10.0.0.5 >> {known}`" in hint


def test_connect_error_for_a_changed_key_names_both_fingerprints(tmp_path):
    import paramiko

    from provision import hostkeys

    old_blob, old_fp = keygen(tmp_path / "old")
    new_blob, new_fp = keygen(tmp_path / "new")
    known = tmp_path / "known_hosts"
    known.write_text(
        f"|1|bm90|aGFzaA== ssh-ed25519 {new_blob}\n[10.0.0.5]:2222 ssh-ed25519 {old_blob}\n"
    )
    got = paramiko.Ed25519Key(filename=str(tmp_path / "new"))
    expected = paramiko.Ed25519Key(data=base64.b64decode(old_blob))
    err = hostkeys.changed_key_error("mybox", "10.0.0.5", 2222, known, got, expected)
    assert f"has ssh-ed25519 {old_fp} ({known}:2), the host showed {new_fp}; refused" in err.message
    assert "CHANGED" in err.message and "accept-new" not in err.hint
    assert f"ssh-keygen -R '[10.0.0.5]:2222' -f {known}" in err.hint
