"""users: the people who log in to the box.

Manages: accounts (created with a home and a shell), membership of `video` and `render`
(GPU device access; never `docker`, which is root-equivalent: containers.docker_users names
who joins it), `~/.ssh/authorized_keys` entries
from local public key files or literal keys (keys already there are kept), and optional
passwordless sudo through `/etc/sudoers.d/provision-<name>` (checked with `visudo -cf`
before it is put in place). Restarts nothing; never reboots.

In a cluster run (`cluster.controller`, with the cluster step: provision/group.py), a new
account gets the UID:GID the group phase gave it, the same on every box; on a box that mounts
the cluster's shared homes (`cluster.nfs_home`), the home and its keys are left to the box
that shares them (root is squashed there), which runs first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from provision import group, shell
from provision.changes import Change, Run, Upload
from provision.errors import Skip
from provision.facts.reads import Read
from provision.resources import file_read, template_file
from provision.settings import absolute_path, each, setting, unix_name
from provision.step import Context, Step

KEY_RE = re.compile(
    r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( .*)?$"
)
SCOPED_RE = re.compile(r"^([a-z_][a-z0-9_-]*)=(.+)$")


def read_key(source: str) -> str:
    """A literal public key, or the first key in a local .pub file; ValueError otherwise."""
    text = source.strip()
    if not KEY_RE.match(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ValueError(f"{source!r} is neither a public key nor a readable key file")
        text = path.read_text().strip().splitlines()[0] if path.read_text().strip() else ""
    if not KEY_RE.match(text) or "\n" in text:
        raise ValueError(f"{source!r} does not hold an OpenSSH public key")
    return text


def key_entry(value: str) -> None:
    """`KEY_OR_FILE` for every account, or `user=KEY_OR_FILE` for one."""
    m = SCOPED_RE.match(value)
    read_key(m[2] if m and not KEY_RE.match(value) else value)


@dataclass(frozen=True)
class Settings:
    """Settings of the users step (inventory keys `users.<field>`)."""

    accounts: tuple[str, ...] = setting((), "user accounts to create/manage", each(unix_name))
    authorized_keys: tuple[str, ...] = setting(
        (), "public keys (files or literal), all accounts or `name=KEY`", each(key_entry)
    )
    groups: tuple[str, ...] = setting(
        ("video", "render"),
        "extra groups (GPU access), those that exist",
        each(unix_name),
    )
    shell: str = setting("/bin/bash", "login shell of new accounts", absolute_path)
    passwordless_sudo: bool = setting(False, "sudo without a password for these accounts")


def keys_for(s: Settings, name: str) -> list[str]:
    """The public keys one account should have."""
    keys = []
    for entry in s.authorized_keys:
        m = SCOPED_RE.match(entry)
        if m and not KEY_RE.match(entry):
            if m[1] == name:
                keys.append(read_key(m[2]))
        else:
            keys.append(read_key(entry))
    return list(dict.fromkeys(keys))


def parse_getent(text: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """`getent passwd` and `getent group` lines → (users: fields, groups: members)."""
    users, groups = {}, {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        fields = rest.split(":")
        if kind == "passwd" and len(fields) >= 7:
            users[fields[0]] = fields
        elif kind == "group" and len(fields) >= 4:
            groups[fields[0]] = [m for m in fields[3].split(",") if m]
    return users, groups


def getent_read(s: Settings) -> Read:
    """The accounts' passwd entries and the wanted groups, tagged by kind."""
    return Read(
        "; ".join(
            [f"getent passwd {shell.cmd(n)} | sed 's/^/passwd /'" for n in s.accounts]
            + [f"getent group {shell.cmd(g)} | sed 's/^/group /'" for g in s.groups]
            + ["true"]
        )
    )


def in_home(name: str, command: str) -> str:
    """`command` with "$h" the account's home as the host's passwd database has it: the home
    is found on the host, in the same read (exit 2 when there is no such account)."""
    home = f"getent passwd {shell.cmd(name)} | cut -d: -f6"
    return f'h=$({home}) && [ -n "$h" ] || exit 2; {command}'


def keys_read(name: str) -> Read:
    """The account's authorized_keys (as root: the file is the user's own, mode 0600)."""
    return Read(in_home(name, 'cat -- "$h/.ssh/authorized_keys"'), sudo=True)


def key_modes_read(name: str) -> Read:
    """Mode and owner of ~/.ssh and ~/.ssh/authorized_keys, one line each."""
    stat = shell.cmd("stat", "-c", "%a %U", "--")
    return Read(in_home(name, f'{stat} "$h/.ssh" "$h/.ssh/authorized_keys"'), sudo=True)


def sudoers_path(name: str) -> str:
    """The account's sudoers drop-in."""
    return f"/etc/sudoers.d/provision-{name}"


def reads(ctx: Context) -> list[Read]:
    """Every read users' check makes, from the settings alone. An account's key files are
    read before check knows it exists (a read of a missing account's home exits 2)."""
    s: Settings = ctx.settings(Settings)
    if not s.accounts:
        return []
    wanted = [getent_read(s)]
    for name in s.accounts:
        if keys_for(s, name):
            wanted += [keys_read(name), key_modes_read(name)]
        if s.passwordless_sudo:
            wanted.append(file_read(ctx, sudoers_path(name)))
    return wanted


def check(ctx: Context) -> list[Change]:
    """What users would change on this host."""
    s: Settings = ctx.settings(Settings)
    if not s.accounts:
        return []
    users, groups = parse_getent(ctx.read(getent_read(s).command).stdout)
    existing_groups = [g for g in s.groups if g in groups]
    changes: list[Change] = []
    for name in s.accounts:
        changes += account_changes(ctx, s, name, users.get(name), groups, existing_groups)
    return changes


def shared_home(ctx: Context, home: str) -> str:
    """The box whose NFS share holds `home`, when this box mounts it ('' : a home of its own).
    That box makes the home and manages what is in it: here root is squashed on it."""
    plan = ctx.settings_by_key.get(group.PLAN)
    share = plan.share if plan else None
    if share and share.is_client(ctx.host) and home.startswith(share.path + "/"):
        return share.server
    return ""


def create(ctx: Context, s: Settings, name: str, groups, existing_groups) -> Change:
    """useradd; in a cluster run with the UID:GID the group phase gave the account (the same
    on every box: provision/group.py account_ids), its group made first with that GID."""
    plan = ctx.settings_by_key.get(group.PLAN)
    ids = plan.accounts.get(name) if plan else None
    server = shared_home(ctx, f"/home/{name}")
    add = ["useradd", "-M" if server else "-m", "-s", s.shell]
    actions = []
    summary = f"create user {name}"
    if ids:
        uid, gid = ids
        if name not in groups:
            actions.append(Run(shell.cmd("groupadd", "-g", gid, "--", name)))
        add += ["-u", uid, "-g", gid]
        summary += f" (UID {uid}, GID {gid}, as on every box of the cluster"
        summary += f"; home on {server}'s share)" if server else ")"
    if existing_groups:
        add += ["-G", ",".join(existing_groups)]
    actions.append(Run(shell.cmd(*add, "--", name)))
    return Change(summary, tuple(actions))


def account_changes(ctx, s: Settings, name: str, passwd, groups, existing_groups) -> list[Change]:
    changes: list[Change] = []
    home = passwd[5] if passwd else f"/home/{name}"
    if passwd is None:
        changes.append(create(ctx, s, name, groups, existing_groups))
    else:
        if passwd[6] != s.shell:
            changes.append(
                Change(
                    f"set {name}'s shell to {s.shell}",
                    (Run(shell.cmd("usermod", "-s", s.shell, "--", name)),),
                )
            )
        missing = [g for g in existing_groups if name not in groups.get(g, [])]
        if missing:
            changes.append(
                Change(
                    f"add {name} to {', '.join(missing)}",
                    (Run(shell.cmd("usermod", "-aG", ",".join(missing), "--", name)),),
                )
            )
    keys = keys_for(s, name)
    if keys and shared_home(ctx, home):
        keys = []  # the box that holds the home writes them (it runs first: the controller)
    if keys:
        path = f"{home}/.ssh/authorized_keys"
        current = ctx.read(keys_read(name).command, sudo=True).stdout if passwd else ""
        have = {line.strip() for line in current.splitlines()}
        missing_keys = [k for k in keys if k not in have]
        if missing_keys:
            content = current if current.endswith("\n") or not current else current + "\n"
            content += "".join(k + "\n" for k in missing_keys)
            mkdir = shell.cmd(
                "install", "-d", "-m", "0700", "-o", name, "-g", name, "--", f"{home}/.ssh"
            )
            noun = "key" if len(missing_keys) == 1 else "keys"
            changes.append(
                Change(
                    f"authorize {len(missing_keys)} {noun} for {name}",
                    (Run(mkdir), Upload(path, content.encode(), "0600", name, name)),
                )
            )
        elif passwd:
            changes += key_mode_changes(ctx, name, home)
    if s.passwordless_sudo:
        changes += template_file(
            ctx,
            "users/sudoers.j2",
            sudoers_path(name),
            {"name": name},
            mode="0440",
            validate="visudo -cf {path}",
            summary=f"give {name} passwordless sudo",
        )
    return changes


def key_mode_changes(ctx: Context, name: str, home: str) -> list[Change]:
    """sshd's permission rules (what verify_keys asserts): ~/.ssh closed to others, and
    authorized_keys the user's and closed to others; else sshd ignores the keys."""
    folder, path = f"{home}/.ssh", f"{home}/.ssh/authorized_keys"
    out = ctx.read(key_modes_read(name).command, sudo=True)
    rows = [line.split() for line in out.stdout.splitlines()]
    if out.ok and len(rows) == 2 and all(len(row) == 2 for row in rows):
        (dir_mode, _owner), (file_mode, file_owner) = rows
        if int(dir_mode, 8) & 0o077 == 0 and int(file_mode, 8) & 0o077 == 0 and file_owner == name:
            return []
    fix = " && ".join(
        (
            shell.cmd("chmod", "go-rwx", "--", folder),
            shell.cmd("chown", name, "--", path),
            shell.cmd("chmod", "go-rwx", "--", path),
        )
    )
    return [Change(f"close {path} to others (sshd's rules)", (Run(fix),))]


def verify_accounts(host, s: Settings) -> None:
    """accounts exist with their shell and GPU groups"""
    if not s.accounts:
        raise Skip("no users.accounts set")
    for name in s.accounts:
        user = host.user(name)
        assert user.exists, f"user {name} does not exist"
        assert user.shell == s.shell or not s.shell, f"{name}'s shell is {user.shell}"
        for gpu_group in s.groups:
            if host.group(gpu_group).exists:
                assert gpu_group in user.groups, f"{name} is not in {gpu_group}"


def verify_keys(host, s: Settings) -> None:
    """authorized_keys hold the keys and sshd's permission rules are met"""
    if not s.authorized_keys:
        raise Skip("no users.authorized_keys set")
    for name in s.accounts:
        keys = keys_for(s, name)
        if not keys:
            continue
        # Read as the account, as sshd reads it: a home on a cluster's NFS share squashes
        # root, so root could not even look into ~/.ssh there.
        home = host.user(name).home
        path = f"{home}/.ssh/authorized_keys"
        as_user = f"runuser -u {shell.cmd(name)} -- "
        stat = host.run(as_user + shell.cmd("stat", "-c", "%U %a", "--", f"{home}/.ssh", path))
        rows = [line.split() for line in stat.stdout.splitlines()]
        assert stat.rc == 0 and len(rows) == 2, f"{path} is missing ({stat.stderr.strip()})"
        (_d_owner, d_mode), (f_owner, f_mode) = rows
        assert f_owner == name and int(f_mode, 8) & 0o077 == 0, f"{path}: wrong owner/mode"
        assert int(d_mode, 8) & 0o077 == 0, f"{home}/.ssh is open to others"
        listed = host.run(as_user + shell.cmd("ssh-keygen", "-lf", path))
        assert listed.rc == 0, f"{path} does not parse: {listed.stderr}"
        content = host.run(as_user + shell.cmd("cat", "--", path)).stdout
        for key in keys:
            assert key.split()[1] in content, f"a key is missing from {path}"


def verify_sudo(host, s: Settings) -> None:
    """passwordless sudo works for the accounts"""
    if not s.passwordless_sudo or not s.accounts:
        raise Skip("users.passwordless_sudo is off")
    for name in s.accounts:
        r = host.run(f"runuser -u {shell.cmd(name)} -- sudo -n true")
        assert r.rc == 0, f"sudo -n fails for {name}: {r.stderr.strip()}"


def verify_sudoers_files(host, s: Settings) -> None:
    """the sudoers drop-ins are root:root 0440"""
    if not s.passwordless_sudo or not s.accounts:
        raise Skip("users.passwordless_sudo is off")
    for name in s.accounts:
        f = host.file(f"/etc/sudoers.d/provision-{name}")
        assert f.exists, f"{f.path} is missing"
        owner = f"{f.user}:{f.group} {oct(f.mode)}"
        assert (f.user, f.group, f.mode) == ("root", "root", 0o440), f"{f.path} is {owner}"


STEP = Step(
    name="users",
    summary="accounts, authorized_keys, GPU groups (video, render), passwordless sudo",
    settings=Settings,
    check=check,
    reads=reads,
    verify=(verify_accounts, verify_keys, verify_sudo, verify_sudoers_files),
)
