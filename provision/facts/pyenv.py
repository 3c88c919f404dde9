"""A Python environment, read without running anything of it but its interpreter and its
distributions' metadata: its Python X.Y, the installed versions of some packages, torch's build,
whether torch's own files are all there, and the marker the pytorch step left in it.

Importing torch to ask it costs a second or more on every plan; the metadata says the same for
the decisions the pytorch step makes (which build, which version, whether to reinstall).
"""

from __future__ import annotations

import json

from provision import shell
from provision.changes import Result
from provision.facts.reads import Read

# The build of the installed torch, read without importing it: the local version tag of its
# metadata (2.13.0+cpu -> cpu, +cu126 -> cu126), else the CUDA version its torch/version.py
# was built with (wheels without a tag: PyPI's, aarch64 CPU ones). None when neither tells.
BUILD_FUNCTION = """\
import importlib.metadata as md, re
def torch_build():
    try:
        version = md.version("torch")
    except md.PackageNotFoundError:
        return None
    if "+" in version:
        return version.split("+", 1)[1]
    try:
        text = md.distribution("torch").locate_file("torch/version.py").read_text()
    except Exception:
        return None
    m = re.search(r"^cuda\\b[^=\\n]*=\\s*(?:['\\"]([0-9.]+)['\\"]|None)", text, re.M)
    if not m:
        return None
    return "cu" + m.group(1).replace(".", "") if m.group(1) else "cpu"
"""
# One read of an environment, without importing torch (that alone takes a second or more):
# its Python, the versions of the packages (importlib.metadata), torch's build
# (BUILD_FUNCTION), the first file of torch's own package its RECORD lists that is gone (an
# interrupted install or a deletion: "error"; bytecode caches are regenerated and scripts
# outside the package do not matter), and the marker the last install wrote. Prints one JSON
# object.
PROBE = (
    BUILD_FUNCTION
    + """\
import json, os, sys
out = {"python": "%d.%d" % sys.version_info[:2], "versions": {}, "error": ""}
for name in sys.argv[1:]:
    try:
        out["versions"][name] = md.version(name)
    except md.PackageNotFoundError:
        out["versions"][name] = None
out["build"] = torch_build()
if out["versions"].get("torch"):
    dist = md.distribution("torch")
    root = str(dist.locate_file(""))
    for path in dist.files or ():
        name = str(path)
        if name.startswith("torch/") and "__pycache__" not in name:
            if not os.path.exists(os.path.join(root, name)):
                out["error"] = name[:300] + " is missing"
                break
try:
    with open(os.path.join(sys.prefix, "provision-pytorch.json")) as marker:
        out["marker"] = json.load(marker)
except (OSError, ValueError):
    out["marker"] = None
print(json.dumps(out))
"""
)


def env_read(python: str, names: list[str]) -> Read:
    """The read of what the environment of `python` holds, for the distributions `names`."""
    return Read(shell.cmd(python, "-c", PROBE, *names))


def parse_env(result: Result) -> dict | None:
    """PROBE's JSON object (None when there is no working python in the environment)."""
    if not result.ok:
        return None
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
