"""`jupyter-url`: the JupyterLab address with its token, printed here only (stdout).

The token is read from its 0600 file on the box over SSH (as root) through a Remote that has
no transcript; it is printed on stdout and nowhere else (no log, no progress line)."""

from __future__ import annotations

import click

from provision.cli.app import cli
from provision.cli.options import host_options
from provision.errors import ConfigError, ProvisionError


@cli.command(
    name="jupyter-url",
    help="Print the JupyterLab URL with its token (http://127.0.0.1:PORT/lab?token=...) for "
    "`provision tunnel`; on stdout only, never in a log.",
)
@host_options
@click.option(
    "--local-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="the tunnel's port here [default: jupyter.port]",
)
def jupyter_url(target, local_port) -> None:
    """The URL with the token, read from the box (help: the command's help= above)."""
    from provision.remote import connect
    from provision.steps import jupyter

    configs = target.configs()
    if len(configs) != 1:
        raise ConfigError("jupyter-url takes one host", where="--host")
    hc = configs[0]
    s = hc.settings["jupyter"]
    if not s.enabled:
        raise ConfigError(
            f"{hc.name}: jupyter.enabled is off",
            "set jupyter.enabled=true and run provision jupyter",
            where="jupyter.enabled",
        )
    remote = connect(hc.connection)  # no log: the answer is the secret
    try:
        answer = remote.run(jupyter.url_command(), sudo=True, check=False)
    finally:
        remote.close()
    token = answer.stdout.strip() if answer.exit_code == 0 else ""
    if not token:
        raise ProvisionError(
            f"{hc.name}: no JupyterLab token in {jupyter.TOKEN_FILE}",
            "run provision jupyter (it generates the token on the box)",
        )
    click.echo(jupyter.lab_url(local_port or s.port, token))
