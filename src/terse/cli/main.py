"""Entry point: ``terse <system> <verb>``. Errors become one line on stderr + exit 1."""

from __future__ import annotations

import logging
import sys

import click
import typer

from terse.cli.autodistil import autodistil_app
from terse.cli.superposed import superposed_app
from terse.cli.text import text_app
from terse.cli.walloc import walloc_app
from terse.core.cores import follow_load_at_start
from terse.core.errors import TerseError

# Recent typer releases vendor their own click (typer._click, typer.Exit/Abort) whose
# exceptions are not the click package's: catch both families.
try:
    from typer._click import exceptions as _typer_click
except ImportError:  # typer that uses the click package itself
    _typer_click = click.exceptions
_EXIT = (click.exceptions.Exit, typer.Exit)
_ABORT = (click.exceptions.Abort, typer.Abort)
_USAGE = (click.ClickException, _typer_click.ClickException)
# Short jobs made of many small parallel regions, where spinning OpenMP teams suffer most
# from a busy core; long training runs keep every core (a load at their start says
# little about the hours after).
_CODING = {("text", "compress"), ("text", "decompress"), ("walloc", "encode"), ("walloc", "decode"),
           ("walloc", "eval"), ("superposed", "generate")}

app = typer.Typer(
    name="terse",
    help="terse: neural text compression and other ML-efficiency systems.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(text_app, name="text")
app.add_typer(superposed_app, name="superposed")
app.add_typer(autodistil_app, name="autodistil")
app.add_typer(walloc_app, name="walloc")


@app.command()
def demo() -> None:
    """Run the main demo on shipped defaults (what `make demo` runs)."""
    from terse.cli.demo import run_demo

    run_demo()


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also usable in-process by tests)."""
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")][:2]
    if tuple(words) in _CODING or words[:1] == ["demo"]:
        follow_load_at_start()
    try:
        app(args=argv, standalone_mode=False, prog_name="terse")
    except TerseError as exc:
        print(f"terse: error: {exc}", file=sys.stderr)
        return 1
    except _EXIT as exc:
        return exc.exit_code
    except _USAGE as exc:  # usage errors: the message (and usage line) on stderr, exit 2
        exc.show()
        return exc.exit_code
    except _ABORT:
        print("terse: aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("terse: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("terse: error: out of memory", file=sys.stderr)
        return 1
    return 0


def entry() -> None:  # console_scripts target
    sys.exit(main())


if __name__ == "__main__":
    entry()
