"""The ``rayling`` command line."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="rayling")
def main() -> None:
    """rayling: a light, fast distributed runtime that speaks Ray's API."""


@main.command()
@click.option("--num-cpus", type=int, default=None, help="CPUs for the local cluster.")
def microbenchmark(num_cpus: int | None) -> None:
    """Run the core microbenchmark on a local cluster."""
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "microbenchmark.py"
    if not script.exists():
        raise click.ClickException("benchmarks/microbenchmark.py is only in a source checkout")
    sys.argv = [str(script)] + (["--num-cpus", str(num_cpus)] if num_cpus else [])
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
