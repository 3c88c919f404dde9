"""Host-key policies for Paramiko (duck-typed: no Paramiko import here).

Fabric trusts any unknown host key; provision refuses it unless the user accepted new keys
(OpenSSH's accept-new) or the key was already proven for the same host at another port or
address (after a confirmed move).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import shlex
from pathlib import Path

from provision.errors import ConnectError


def known_name(addr: str, port: int) -> str:
    """The name known_hosts files use: addr, or [addr]:port off port 22."""
    return addr if port == 22 else f"[{addr}]:{port}"


class UnknownHostKey(Exception):
    """The host showed a key that known_hosts does not vouch for."""

    def __init__(self, key_type: str) -> None:
        super().__init__(key_type)
        self.key_type = key_type


class RejectPolicy:
    """Paramiko policy: refuse hosts whose key is not in known_hosts (Fabric would add it),
    except the one key already proven for this host at another port or address."""

    def __init__(self, known_hosts: Path, trusted_keys: tuple[str, ...] = ()) -> None:
        self.known_hosts = known_hosts
        self.trusted_keys = trusted_keys

    def missing_host_key(self, client, hostname, key) -> None:
        if f"{key.get_name()} {key.get_base64()}" in self.trusted_keys:
            AcceptNewPolicy(self.known_hosts).missing_host_key(client, hostname, key)
            return
        raise UnknownHostKey(key.get_name())


class AcceptNewPolicy:
    """Paramiko policy like OpenSSH's accept-new: trust and record a key seen the first time."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.known_hosts.open("a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


# --- a changed host key: what was expected, what came, and the whole fix ---------------------


def fingerprint(key_b64: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob (`SHA256:` + unpadded base64)."""
    try:
        blob = base64.b64decode(key_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "SHA256:?"
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _name_matches(field: str, name: str) -> bool:
    """Whether a known_hosts host field (plain list or `|1|salt|hash`) names `name`."""
    if field.startswith("|1|"):
        try:
            salt, digest = (base64.b64decode(p) for p in field[3:].split("|", 1))
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)
    return name in field.split(",")


def known_keys(path: Path, name: str) -> list[tuple[int, str, str]]:
    """(line number, key type, base64) of the entries for `name` in a known_hosts file."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    found = []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if fields and fields[0].startswith("@"):  # @cert-authority / @revoked: not a host key
            continue
        if len(fields) >= 3 and _name_matches(fields[0], name):
            found.append((number, fields[1], fields[2]))
    return found


def changed_key_fix(addr: str, port: int, known: Path | str, new_fp: str, key_type: str) -> str:
    """The whole fix for a changed host key; never "accept new", which cannot replace a key."""
    name = known_name(addr, port)
    short = key_type.removeprefix("ssh-").split("-")[0]  # ssh-ed25519 -> ed25519, ecdsa-...
    port_opt = f"-p {port} " if port != 22 else ""
    known_q = shlex.quote(str(known))
    return (
        "if the host was reinstalled or its keys regenerated: (1) verify the new key out of band "
        f"(on its console: `ssh-keygen -lf /etc/ssh/ssh_host_{short}_key.pub` must print "
        f"{new_fp}); (2) remove the old entry: `ssh-keygen -R {shlex.quote(name)} -f {known_q}`; "
        f"(3) record the new one: `ssh-keyscan {port_opt}-t {short} {addr} >> {known_q}` (then "
        f"`ssh-keygen -lf {known_q}` shows {new_fp}). If (1) does not show {new_fp}, do not "
        "connect: someone may be in between"
    )


def changed_key_error(
    host: str, addr: str, port: int, known: Path, got, expected=None
) -> ConnectError:
    """The ConnectError for a host key that differs from known_hosts: both fingerprints, the
    file and line of the old entry, and the whole fix. `got`/`expected` are Paramiko keys."""
    new_fp = fingerprint(got.get_base64())
    name = known_name(addr, port)
    old = [(n, t, b) for n, t, b in known_keys(known, name) if t == got.get_name()]
    if old:
        n, _t, b64 = old[0]
        old_text = f"{fingerprint(b64)} ({known}:{n})"
    elif expected is not None:
        old_text = f"{fingerprint(expected.get_base64())} ({known})"
    else:
        old_text = f"the entry in {known}"
    return ConnectError(
        f"{host}: the host key of {name} has CHANGED: known_hosts has {got.get_name()} "
        f"{old_text}, the host showed {new_fp}; refused",
        changed_key_fix(addr, port, known, new_fp, got.get_name()),
    )


CHANGED_RE = re.compile(
    r"REMOTE HOST IDENTIFICATION HAS CHANGED|has changed and you have requested strict"
)
OFFENDING_RE = re.compile(r"Offending (\S+) key in (.+):(\d+)")
SENT_RE = re.compile(
    r"fingerprint for the (\S+) key sent by the remote host is\s*(SHA256:[\w+/=]+)"
)


def openssh_changed_key_hint(stderr: str, addr: str, port: int, known: str) -> str:
    """For OpenSSH's "REMOTE HOST IDENTIFICATION HAS CHANGED": both fingerprints and the
    whole fix ('' when the text is not about a changed key)."""
    if not CHANGED_RE.search(stderr):
        return ""
    sent = SENT_RE.search(stderr)
    new_fp = sent.group(2).rstrip(".") if sent else "the new fingerprint"
    key_type = sent.group(1).lower() if sent else "ed25519"  # ED25519, ECDSA, RSA
    offending = OFFENDING_RE.search(stderr)
    old_fp = "an older key"
    if offending:
        path, line = Path(os.path.expanduser(offending.group(2))), int(offending.group(3))
        try:
            fields = path.read_text(errors="replace").splitlines()[line - 1].split()
        except (OSError, IndexError):
            fields = []
        shown = fingerprint(fields[2]) if len(fields) >= 3 else "the entry"
        old_fp = f"{shown} ({path}:{line})"
    return (
        f"the host key of {known_name(addr, port)} has CHANGED: {known} has {old_fp}, the host "
        f"showed {new_fp}. " + changed_key_fix(addr, port, known, new_fp, key_type)
    )
