"""`dfp`: the platform's command line (stack, branches, benchmarks)."""

from __future__ import annotations

import sys

import click


@click.group()
def main() -> None:
    """dfp: Kronodroid malware-detection platform on Dagster and lakeFS."""


# -- stack ---------------------------------------------------------------------------------
@main.group()
def stack() -> None:
    """Local services (lakeFS, ...) with state under DFP_HOME (default ./.dfp)."""


def _stack_or_exit():
    from dfp.stack import LocalStack

    return LocalStack()


@stack.command("up")
def stack_up() -> None:
    """Build (once) and start the local services; create the lakeFS repository."""
    from dfp.stack import StackError

    try:
        _stack_or_exit().up()
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc


@stack.command("down")
def stack_down() -> None:
    """Stop the services that `dfp stack up` started (only those)."""
    _stack_or_exit().down()


@stack.command("status")
def stack_status() -> None:
    """Show each service, its state and URL. Exit code 1 if any is not running."""
    rows = _stack_or_exit().status()
    click.echo(f"{'SERVICE':<10} {'STATE':<10} {'PID':<8} URL")
    for row in rows:
        click.echo(f"{row['service']:<10} {row['state']:<10} {row['pid']:<8} {row['url']}")
    sys.exit(0 if all(r["state"] == "running" for r in rows) else 1)


if __name__ == "__main__":
    main()
