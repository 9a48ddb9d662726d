"""`deploy` command line: a thin click layer; each subcommand lives beside the API it wraps.

Subcommands are imported lazily so `deploy data synth` does not pay for importing TVM.
"""
from __future__ import annotations

import importlib
import sys

import click

from deploy.errors import DeployError
from deploy.io import os_error

COMMANDS = {
    "compile": "deploy.compiler.cli:compile_cmd",
    "check-preprocess": "deploy.preprocess.cli:check_preprocess_cmd",
    "data": "deploy.data.cli:data_group",
    "run": "deploy.tools.run:cli",
    "image2npz": "deploy.tools.image2npz:cli",
    "perf": "deploy.tools.perf:cli",
    "eval": "deploy.tools.evaluate:cli",
    "analyze": "deploy.analysis.cli:analyze_cmd",
    "report": "deploy.tools.html_report:cli",
    "zoo": "deploy.zoo.cli:zoo_group",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Compile, run, profile and evaluate segmentation networks with Apache TVM."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: DeployError is a user error and is printed plainly, without a traceback; so are a
    file the operating system refused (deploy.io.os_error names it and what to do) and running out
    of memory. Exit code 2 for all three, like click's usage errors."""
    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except DeployError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except OSError as e:  # a file the system refused (permissions, space, a folder in the way): named
        if e.errno is None:
            raise
        click.echo(f"error: {os_error(e)}", err=True)
        sys.exit(2)
    except MemoryError as e:
        click.echo(f"error: out of memory ({e or 'an allocation failed'}); reduce --batch (-b), --workers, "
                   "-i/-p or the input size, or free memory, and run again", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
