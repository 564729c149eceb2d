"""The ``rayling`` command line."""

from __future__ import annotations

import click

_WAIT = click.option(
    "--wait-for-head", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
    help="How long to wait for a head that is still coming up (default 60, or "
         "RAYLING_WAIT_FOR_HEAD).")


def _set_wait(seconds: float | None) -> None:
    import os

    if seconds is not None:
        os.environ["RAYLING_WAIT_FOR_HEAD"] = str(seconds)


@click.group()
@click.version_option(package_name="rayling")
def main() -> None:
    """rayling: a light, fast distributed runtime that speaks Ray's API."""


@main.command()
@click.option("--head", is_flag=True, help="Start the head node of a new cluster.")
@click.option("--address", default=None, help="HOST:PORT of the head to join.")
@click.option("--slurm", is_flag=True,
              help="Form the cluster from Slurm's environment: task 0 is the head, the other "
                   "tasks join it (implies --block).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="The head's TCP port (0: any free port; default 6379).")
@click.option("--num-cpus", type=float, default=None, help="CPUs of this node.")
@click.option("--num-gpus", type=float, default=None, help="GPUs of this node.")
@click.option("--resources", "resources_json", default=None,
              help='Custom resources as JSON, e.g. \'{"disk": 1}\'.')
@click.option("--object-store-memory", type=click.IntRange(min=1), default=None,
              help="Bytes of shared memory for this node's object store.")
@click.option("--node-ip-address", default=None,
              help="The address this node listens on and other nodes reach it at "
                   "(default: loopback for a head, the route to the head for a node).")
@click.option("--token-file", default=None, type=click.Path(dir_okay=False),
              help="A file (mode 0600) holding the cluster token (default: RAYLING_TOKEN, "
                   "or the head's file in ~/.rayling/clusters/).")
@click.option("--token", default=None, hidden=True,
              help="Refused: a token in the command line shows to every local user.")
@click.option("--block", is_flag=True, help="Stay in the foreground until stopped.")
@_WAIT
@click.option("--temp-dir", default=None, type=click.Path(file_okay=False),
              help="Where this node's session folder (sockets, logs) goes (default: TMPDIR).")
@click.option("--disable-usage-stats", is_flag=True,
              help="Accepted for Ray's scripts; rayling collects no usage statistics.")
@click.option("--include-dashboard", type=click.BOOL, default=None,
              help="Whether the head serves the dashboard (default: when its libraries "
                   "are installed, `pip install 'rayling[dashboard]'`).")
@click.option("--dashboard-host", default="127.0.0.1", show_default=True,
              help="Where the dashboard listens (other than loopback: it asks for the "
                   "cluster token).")
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=8265,
              show_default=True, help="The dashboard's port (or the next free one).")
@click.option("--metrics-export-port", type=click.IntRange(0, 65535), default=None,
              help="Serve the cluster's Prometheus metrics on this port too (of the "
                   "dashboard's host).")
def start(head, address, slurm, port, num_cpus, num_gpus, resources_json,
          object_store_memory, node_ip_address, token_file, token, block, temp_dir,
          disable_usage_stats, include_dashboard, dashboard_host, dashboard_port,
          metrics_export_port, wait_for_head) -> None:
    """Start a head node, or a node that joins one."""
    from ._private import cluster_commands as cc

    _set_wait(wait_for_head)
    if disable_usage_stats:
        click.echo("(rayling) --disable-usage-stats changes nothing: rayling collects no "
                   "usage statistics.", err=True)
    try:
        if temp_dir is not None:
            cc.set_temp_dir(temp_dir)
        if token is not None:
            raise cc.StartError(
                "--token is refused: every local user can read a command line (in "
                "/proc/<pid>/cmdline). Put the token in a file only you can read and pass "
                "--token-file FILE, or set RAYLING_TOKEN.")
        token = cc.read_token_file(token_file) if token_file else None
        if slurm:
            code = cc.start_slurm(
                {"num_cpus": num_cpus, "num_gpus": num_gpus, "resources_json": resources_json},
                port=port, node_ip=node_ip_address, object_store_memory=object_store_memory,
                echo=click.echo)
        elif head == bool(address):
            raise cc.StartError("give either --head or --address HOST:PORT (or --slurm)")
        elif head:
            from ._private import dashboard_process

            dashboard_process.check(include_dashboard, dashboard_host, dashboard_port,
                                    metrics_export_port)
            code = cc.start_head(
                cc.node_resources(num_cpus, num_gpus, resources_json),
                port=6379 if port is None else port, node_ip=node_ip_address, token=token,
                object_store_memory=object_store_memory, block=block, echo=click.echo,
                dashboard=(dashboard_host, dashboard_port)
                if dashboard_process.wanted(include_dashboard) else None,
                metrics_port=metrics_export_port)
        else:
            code = cc.start_node(
                address, cc.node_resources(num_cpus, num_gpus, resources_json),
                node_ip=node_ip_address, token=token,
                object_store_memory=object_store_memory, block=block, echo=click.echo)
    except (cc.StartError, OSError, ValueError, TypeError, ImportError) as e:
        raise click.ClickException(str(e)) from None
    except Exception as e:  # e.g. the daemon failed to start: say why, no traceback
        raise click.ClickException(f"{type(e).__name__}: {e}") from None
    raise SystemExit(code)


@main.command()
@click.option("-f", "--force", is_flag=True,
              help="Kill the daemons at once (SIGKILL) instead of asking them to stop.")
def stop(force) -> None:
    """Stop the rayling daemons that this user started with `rayling start` on this
    machine (never another user's), with their workers, shared memory and files."""
    from ._private import cluster_commands as cc

    raise SystemExit(cc.stop(echo=click.echo, force=force))


@main.command()
@click.option("--address", default=None, help="HOST:PORT of the head (default: auto).")
@_WAIT
def status(address, wait_for_head) -> None:
    """Show the cluster's nodes and resource use."""
    from ._private import cluster_commands as cc

    _set_wait(wait_for_head)
    try:
        raise SystemExit(cc.status(address, echo=click.echo))
    except ConnectionError as e:
        raise click.ClickException(str(e)) from None


_KINDS = click.Choice(["tasks", "actors", "objects", "nodes", "workers", "jobs",
                       "placement-groups"])
_ADDRESS = click.option(
    "--address", default=None,
    help="HOST:PORT of the head (default: this machine's `rayling start` cluster, else the "
         "newest one a script's init() started here).")
_FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "json", "yaml"]),
                       default="table", show_default=True)


def _state(command, *args) -> None:
    """Run a state command and print what it says; errors become one line."""
    from . import exceptions as exc
    from .util.state import cli

    try:
        said = getattr(cli, command)(*args)
        if said is not None:
            click.echo(said)
    except KeyboardInterrupt:  # (rayling logs --follow ends with Ctrl-C)
        pass
    except (ConnectionError, LookupError, ValueError, exc.RaySystemError) as e:
        raise click.ClickException(str(e)) from None
    finally:
        from ._private import session

        session.shutdown()


@main.command("list")
@click.argument("kind", type=_KINDS)
@click.option("--filter", "filters", multiple=True,
              help='Keep rows where FIELD=VALUE (or FIELD!=VALUE); may be repeated.')
@click.option("--limit", type=int, default=100, show_default=True, help="At most this many rows.")
@click.option("--detail", is_flag=True, help="Show every field.")
@_FORMAT
@_ADDRESS
def list_(kind, filters, limit, detail, fmt, address) -> None:
    """List the cluster's tasks, actors, objects, nodes, workers, jobs or placement
    groups (as Ray's state API)."""
    _state("list_command", kind, filters, limit, detail, fmt, address)


@main.command()
@click.argument("kind", type=_KINDS)
@click.argument("ident", metavar="ID")
@_FORMAT
@_ADDRESS
def get(kind, ident, fmt, address) -> None:
    """Show one task, actor, object, node, worker, job or placement group by its id."""
    _state("get_command", kind, ident, fmt, address)


@main.command()
@click.argument("kind", type=click.Choice(["tasks", "actors", "objects"]))
@_FORMAT
@_ADDRESS
def summary(kind, fmt, address) -> None:
    """How many tasks (by function), actors (by class) or objects there are, by state."""
    _state("summary_command", kind, fmt, address)


@main.command()
@click.option("--output", default=None, help="Where to write the trace (JSON).")
@_ADDRESS
def timeline(output, address) -> None:
    """Write the tasks that ran as a Chrome trace (chrome://tracing, Perfetto)."""
    _state("timeline_command", output, address)


@main.command()
@click.argument("kind", required=False, type=click.Choice(["task", "actor", "worker", "node"]))
@click.argument("ident", metavar="[ID]", required=False)
@click.option("--file", "filename", default=None, help="With `node ID`: the log file to show.")
@click.option("-f", "--follow", is_flag=True,
              help="Go on printing new lines (until the task ends or the actor dies).")
@click.option("--tail", type=int, default=1000, show_default=True,
              help="Start with the last N lines (-1: all).")
@click.option("--node-id", default=None, help="The node of `worker PID` (default: the head).")
@_ADDRESS
def logs(kind, ident, filename, follow, tail, node_id, address) -> None:
    """What a task, actor or worker printed, or a node's log files: `rayling logs task
    ID`, `actor ID`, `worker PID`, `node ID [--file NAME]`; alone, the head's files."""
    _state("logs_command", kind, ident, filename, follow, tail, node_id, address,
           click.echo)


@main.command()
@click.option("--limit", type=int, default=10_000, show_default=True,
              help="At most this many object references.")
@_ADDRESS
def memory(limit, address) -> None:
    """Objects by size, who holds them, and each node's object store use."""
    _state("memory_command", address, limit)


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
