"""Parse the inventory: a small subset of Ansible's INI format, with file:line in every error.

Supported: `[group]` host lines `name key=value ...` (split like a shell), `[group:vars]`,
`[all:vars]`, `[group:children]`, `#`/`;` comments, hosts before any section (ungrouped).
No ranges, no YAML, no dynamic inventories. Keys are checked later: step settings in
config.py, connection variables in hostvars.py.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from provision.errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
GROUP_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_-]*)?$")
SECTION_RE = re.compile(r"^\[([^\]:]*)(?::([^\]]*))?\]\s*$")
AD_HOC_RE = re.compile(
    r"^(?P<user>[A-Za-z0-9_][A-Za-z0-9_.-]*)"
    r"@(?P<addr>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)"
    r"(:(?P<port>\d+))?$"
)


@dataclass(frozen=True)
class Value:
    """A setting's raw text and where it was written."""

    text: str
    where: str  # "inventory.ini:12", "--set", "provision.toml:4"


@dataclass
class Group:
    """A group of hosts, its child groups and its vars."""

    name: str
    where: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Value] = field(default_factory=dict)
    declared: bool = False  # a [name] or [name:children] section, or named as a child


@dataclass
class HostEntry:
    """A host as the inventory describes it."""

    name: str
    where: str
    vars: dict[str, Value] = field(default_factory=dict)


@dataclass
class Inventory:
    """Hosts, groups and [all:vars] of one inventory file."""

    path: Path | None = None
    hosts: dict[str, HostEntry] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    all_vars: dict[str, Value] = field(default_factory=dict)

    def groups_of(self, host: str) -> list[str]:
        """Every group the host belongs to, directly or through [group:children]."""
        direct = [g.name for g in self.groups.values() if host in g.hosts]
        result: list[str] = []
        todo = list(direct)
        while todo:
            name = todo.pop(0)
            if name in result:
                continue
            result.append(name)
            todo.extend(p.name for p in self.groups.values() if name in p.children)
        return result

    def ancestors(self, group: str) -> set[str]:
        """Groups that contain `group` through [x:children], at any depth."""
        found: set[str] = set()
        todo = [group]
        while todo:
            name = todo.pop()
            for parent in self.groups.values():
                if name in parent.children and parent.name not in found:
                    found.add(parent.name)
                    todo.append(parent.name)
        return found

    def hosts_in(self, group: str) -> list[str]:
        """Hosts of a group and of its children, in inventory order."""
        seen: list[str] = []
        todo = [group]
        visited: set[str] = set()
        while todo:
            name = todo.pop(0)
            if name in visited:
                continue
            visited.add(name)
            g = self.groups[name]
            seen.extend(h for h in g.hosts if h not in seen)
            todo.extend(g.children)
        return [h for h in self.hosts if h in seen]

    def select(self, patterns: list[str]) -> list[str]:
        """Host names for --host values: host names, group names or `all` (ad hoc excluded)."""
        selected: list[str] = []
        for pattern in patterns:
            if pattern == "all":
                names = list(self.hosts)
            elif pattern in self.hosts:
                names = [pattern]
            elif pattern in self.groups:
                names = self.hosts_in(pattern)
                if not names:
                    raise ConfigError(
                        f"group '{pattern}' has no hosts",
                        f"add host lines under [{pattern}], or pass --host with a host name",
                        where=self.group_where(pattern),
                    )
            else:
                raise unknown_host_error(pattern, self)
            selected.extend(n for n in names if n not in selected)
        return selected

    def group_where(self, group: str) -> str:
        """file:line of a group's header, for error messages."""
        return self.groups[group].where


def unknown_host_error(pattern: str, inventory: Inventory) -> ConfigError:
    """The error for a --host that is neither a host, a group nor user@address."""
    known = [*inventory.hosts, *inventory.groups, "all"]
    close = difflib.get_close_matches(pattern, known, n=1)
    source = str(inventory.path) if inventory.path else "no inventory file"
    hint = f"did you mean '{close[0]}'? " if close else ""
    hint += "A host not in the inventory is given as user@address[:port]."
    return ConfigError(f"unknown host or group '{pattern}' ({source})", hint, where="--host")


def parse_ad_hoc(pattern: str) -> tuple[str, str, int] | None:
    """`user@addr[:port]` → (user, addr, port), or None when the pattern is not of that form."""
    m = AD_HOC_RE.match(pattern)
    if not m:
        return None
    addr = m["addr"].strip("[]")
    port = int(m["port"]) if m["port"] else 22
    if not 0 < port < 65536:
        raise ConfigError(
            f"port {port} out of range 1-65535",
            f"e.g. --host {m['user']}@{m['addr']}:22",
            where="--host",
        )
    return m["user"], addr, port


def _split_line(text: str, where: str) -> list[str]:
    """Split a host line like a shell; a token starting with # begins a comment."""
    try:
        tokens = shlex.split(text, comments=False, posix=True)
    except ValueError as exc:
        raise ConfigError(f"cannot split line: {exc}", "close the quote", where=where) from None
    for i, tok in enumerate(tokens):
        if tok.startswith("#"):
            return tokens[:i]
    return tokens


def _key_value(token: str, where: str) -> tuple[str, str]:
    """Split `key=value`, checking the key's shape."""
    if "=" not in token:
        raise ConfigError(
            f"'{token}' is not key=value", "host vars are written as key=value", where=where
        )
    key, value = token.split("=", 1)
    key = key.strip()
    if not KEY_RE.match(key):
        raise ConfigError(
            f"'{key}' is not a valid key",
            "use an ansible_* connection name or step.field, e.g. base.apt_mirror",
            where=where,
        )
    return key, value


def _vars_line(text: str, where: str) -> tuple[str, str]:
    """A `key=value` line of a :vars section (spaces around = allowed, value may be quoted)."""
    key, value = _key_value(text, where)
    value = value.strip()
    if value[:1] in ("'", '"'):
        parts = _split_line(value, where)
        if len(parts) != 1:
            raise ConfigError(
                "extra text after the quoted value",
                'quote the whole value, e.g. key="a b", or put a comment on its own line',
                where=where,
            )
        value = parts[0]
    return key, value


def parse(text: str, path: Path | None = None) -> Inventory:
    """Parse inventory text; every error names file:line."""
    name = str(path) if path else "<inventory>"
    inv = Inventory(path=path)
    section, kind = "ungrouped", "hosts"
    # A byte-order mark (Windows editors write one) is not part of the first line.
    text = text.removeprefix("\ufeff")
    for lineno, raw in enumerate(text.splitlines(), 1):
        where = f"{name}:{lineno}"
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            m = SECTION_RE.match(line)
            if not m:
                raise ConfigError(
                    f"bad section header {line!r}",
                    "write [group], [group:vars] or [group:children]",
                    where=where,
                )
            section, kind = m[1].strip(), (m[2] or "hosts").strip()
            if not GROUP_RE.match(section):
                raise ConfigError(
                    f"bad group name {section!r}",
                    "letters, digits, _ and -; not starting with a digit",
                    where=where,
                )
            if kind not in ("hosts", "vars", "children"):
                raise ConfigError(
                    f"unknown section type ':{kind}'", "use :vars or :children", where=where
                )
            if section == "all" and kind != "vars":
                raise ConfigError(
                    "only [all:vars] is allowed for the group 'all'",
                    "every host is in 'all' already; put hosts under a named [group]",
                    where=where,
                )
            if section != "all" and section not in inv.groups:
                inv.groups[section] = Group(section, where)
            if section != "all" and kind != "vars":
                inv.groups[section].declared = True
            continue
        if kind == "vars":
            key, value = _vars_line(line, where)
            target = inv.all_vars if section == "all" else inv.groups[section].vars
            if key in target:
                raise ConfigError(
                    f"'{key}' is set twice in [{section}:vars] (first at {target[key].where})",
                    "keep one of the two lines",
                    where=where,
                )
            target[key] = Value(value, where)
        elif kind == "children":
            child = line.split()[0]
            if not GROUP_RE.match(child) or len(line.split()) != 1:
                raise ConfigError(
                    f"bad child group {line!r}", "one group name per line", where=where
                )
            inv.groups[section].children.append(child)
        else:
            _host_line(inv, section, line, where)
    _check_groups(inv)
    return inv


def _host_line(inv: Inventory, section: str, line: str, where: str) -> None:
    tokens = _split_line(line, where)
    if not tokens:
        return
    host, *pairs = tokens
    if not NAME_RE.match(host):
        raise ConfigError(
            f"bad host name {host!r}",
            "letters, digits, '.', '_' and '-', not starting with '-' or '.'",
            where=where,
        )
    entry = inv.hosts.setdefault(host, HostEntry(host, where))
    for token in pairs:
        key, value = _key_value(token, where)
        old = entry.vars.get(key)
        if old is not None and old.text != value:
            raise ConfigError(
                f"host '{host}' sets '{key}' to {value!r} here and to {old.text!r} at {old.where}",
                "keep one value",
                where=where,
            )
        entry.vars[key] = Value(value, where)
    if section not in inv.groups:
        inv.groups[section] = Group(section, where, declared=True)
    if host not in inv.groups[section].hosts:
        inv.groups[section].hosts.append(host)


def _check_groups(inv: Inventory) -> None:
    named_as_child = {c for g in inv.groups.values() for c in g.children}
    for group in inv.groups.values():
        if not group.declared and group.name not in named_as_child:
            # Only a [name:vars] section: a typo (gpus for gpu) would drop its settings silently.
            others = [g.name for g in inv.groups.values() if g.declared]
            close = difflib.get_close_matches(group.name, others, n=1)
            raise ConfigError(
                f"[{group.name}:vars] is for a group that does not exist",
                (f"did you mean [{close[0]}:vars]? " if close else "")
                + f"define the group with a [{group.name}] section of hosts, or "
                f"[{group.name}:children]",
                where=group.where,
            )
        if group.name in inv.hosts:
            raise ConfigError(
                f"'{group.name}' is both a host and a group",
                "rename one of them",
                where=group.where,
            )
        for child in group.children:
            if child not in inv.groups:
                close = difflib.get_close_matches(child, list(inv.groups), n=1)
                raise ConfigError(
                    f"[{group.name}:children] names unknown group '{child}'",
                    f"did you mean '{close[0]}'?"
                    if close
                    else "define the group with its own [section]",
                    where=group.where,
                )
        if group.name in inv.ancestors(group.name):
            raise ConfigError(
                f"group '{group.name}' contains itself through :children",
                f"remove '{group.name}' (or a group that contains it) from a [x:children] list",
                where=group.where,
            )


def load(path: Path) -> Inventory:
    """Read and parse an inventory file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"inventory file {path} not found",
            "create it (see the example inventory.ini) or pass --inventory PATH",
            where="--inventory",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read inventory {path}: {exc}",
            "save the file as UTF-8 text, readable by you",
            where="--inventory",
        ) from None
    return parse(text, path)


def set_host_vars(path: Path, host: str, values: dict[str, str]) -> str:
    """Write key=value pairs onto the host's line (replacing earlier values); returns file:line.

    The rest of the file, comments included, is kept; the old file is saved as
    `<name>.provision-bak` and the new one renamed into place.
    """
    inv = load(path)
    if host not in inv.hosts:
        raise ConfigError(
            f"host '{host}' is not in {path}",
            f"add a line for {host} to {path} first",
            where="--update-inventory",
        )
    lineno = int(inv.hosts[host].where.rsplit(":", 1)[1])
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    line = lines[lineno - 1].rstrip("\n")
    for key, value in values.items():
        token = f"{key}={shlex.quote(value)}"
        pattern = re.compile(rf"(?<=\s){re.escape(key)}=(\"[^\"]*\"|'[^']*'|\S+)")
        line, count = pattern.subn(lambda _m, t=token: t, line)
        if not count:
            code, sep, comment = line.partition(" #")
            line = f"{code.rstrip()} {token}" + (f" {sep.strip()}{comment}" if sep else "")
    lines[lineno - 1] = line + "\n"
    backup = path.with_name(path.name + ".provision-bak")
    backup.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    tmp = path.with_name(f".{path.name}.provision-new")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(path)
    return f"{path}:{lineno}"
