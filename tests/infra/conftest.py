"""The package's verify checks under plain pytest + testinfra, for CI jobs that prefer it:

    pytest -m infra tests/infra --hosts=paramiko://USER@ADDR:PORT --ssh-identity-file=KEY \
        --sudo [--provision-inventory inventory.ini --provision-host NAME]

The settings come from the inventory (the same merge as `provision verify`), or the step
defaults. testinfra's paramiko backend accepts unknown host keys with a warning; that is
acceptable for read-only checks, and `provision verify` checks keys strictly.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser):
    parser.addoption("--provision-inventory", default=None, help="inventory for the settings")
    parser.addoption("--provision-host", default=None, help="the host's name in it")


@pytest.fixture(scope="session")
def settings(request):
    """Each step's merged settings for the host (defaults without an inventory)."""
    from provision import config, inventory
    from provision.steps import STEPS

    path = request.config.getoption("--provision-inventory")
    name = request.config.getoption("--provision-host")
    if not path:
        return {s.key: s.settings() for s in STEPS}
    (hc,) = config.load_hosts(inventory.load(Path(path)), [name])
    return hc.settings
