"""Docker's /etc/docker/daemon.json: merged, never overwritten.

People keep their own settings there (registry mirrors, insecure registries, their own
runtimes), and tools that own the whole file have a history of losing them (NVIDIA's
nvidia-docker role rewrote it; `apt purge nvidia-docker2` deleted it). The containers step
owns a short list of keys and changes only those: every other key stays, with its value and
the file's key order. Pure functions: the step reads the file and writes the result.
"""

from __future__ import annotations

import copy
import json

from provision.errors import ProvisionError

PATH = "/etc/docker/daemon.json"
# The copy of the file as it was before provision first changed it: verify checks that
# every key the user had there (and that provision does not own) still holds its value.
ORIGINAL = "/var/lib/provision/containers/daemon.json.before-provision"


def parse(text: str, path: str = PATH) -> dict:
    """The file's object ({} for a missing or empty file); an error naming the line and column
    when it is not a JSON object (provision will not guess what a broken file meant)."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProvisionError(
            f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})",
            f"fix {path} (Docker itself refuses to start with it); provision changes only "
            "its own keys in it and leaves the rest to you",
        ) from None
    if not isinstance(value, dict):
        raise ProvisionError(
            f"{path}: holds a JSON {type(value).__name__}, not an object",
            f'daemon.json is one JSON object ({{"key": value, ...}}): fix {path}',
        )
    return value


def merge(current: dict, wanted: dict) -> dict:
    """`current` with each key of `wanted` set. Where both hold an object (log-opts, runtimes,
    features) the two are merged one key at a time, so the user's other entries in it stay."""
    out = copy.deepcopy(current)
    for key, value in wanted.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def dumps(value: dict) -> str:
    """The file's text: two-space indent, the keys in their order, UTF-8 as is."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def changed_keys(before: dict, after: dict, prefix: str = "") -> list[str]:
    """The dotted names of the keys whose value differs (added, changed or removed)."""
    names: list[str] = []
    for key in dict.fromkeys([*before, *after]):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            names += changed_keys(old, new, f"{prefix}{key}.")
        elif old != new or (key in before) != (key in after):
            names.append(f"{prefix}{key}")
    return names


def kept(original: dict, current: dict, owned: dict) -> list[str]:
    """The dotted names of the user's keys (in `original`, not owned) that `current` lost or
    changed: [] when every one is still there with its value."""
    lost: list[str] = []

    def walk(orig: dict, cur: dict, own: dict, prefix: str) -> None:
        for key, value in orig.items():
            mine = own.get(key) if isinstance(own, dict) else None
            if key in own and not isinstance(mine, dict):
                continue  # a key provision owns: its value is provision's
            if isinstance(value, dict) and isinstance(mine, dict):
                walk(
                    value,
                    cur.get(key) if isinstance(cur.get(key), dict) else {},
                    mine,
                    f"{prefix}{key}.",
                )
            elif key not in cur or cur[key] != value:
                lost.append(f"{prefix}{key}")

    walk(original, current, owned, "")
    return lost
