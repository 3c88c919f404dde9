"""Jinja2 templates of every file the tool writes: rendering, hashing and diffs.

Templates live in `templates/<step>/` at the repository root and ship inside the wheel as
`provision/templates`. StrictUndefined: a missing variable is an error, never an empty string.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
from pathlib import Path
from typing import Any

from provision.errors import TemplateError


def templates_dir() -> Path:
    """The installed templates (wheel) or the checkout's templates/ folder."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise TemplateError(f"templates folder not found next to {here}", "reinstall provision")


@functools.lru_cache(maxsize=1)
def environment() -> Any:
    """The one Jinja environment (imported lazily: startup stays fast)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    from provision.formats import FILTERS  # escaping per file format: systemd_arg, yaml_str...

    env.filters.update(FILTERS)
    return env


def render(template: str, **variables: Any) -> bytes:
    """Render templates/<template> with explicit variables; errors name template:line."""
    import jinja2

    try:
        text = environment().get_template(template).render(template=template, **variables)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"templates/{template}:{exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound:
        raise TemplateError(f"templates/{template} does not exist") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"templates/{template}: {exc.message}") from None
    return text.encode()


def all_templates() -> list[str]:
    """Every template name, for the render-all test."""
    root = templates_dir()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.j2"))


def sha256(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def unified_diff(old: str, new: str, path: str) -> str:
    """A unified diff of a file's old and new text."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"{path} (host)",
        tofile=f"{path} (provision)",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
