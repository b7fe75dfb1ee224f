"""``streamseg bench``: the benchmarks' commands.

Each command imports its benchmark from :mod:`streamseg_bench` inside the command, so
that the service's modules (and ``streamseg`` itself) never load the benchmarks or
their libraries (scikit-learn, lifetimes). Registered on the main command line by
:mod:`streamseg.cli`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

bench_app = typer.Typer(help="Measure: quality, flapping, throughput, Kafka end to end, "
                        "Redis limits, predictive traits.", no_args_is_help=True)


def _print_json(result: Any) -> None:
    typer.echo(json.dumps(result, indent=2))


@bench_app.command("quality")
def bench_quality(
    customers: Annotated[int, typer.Option(help="Simulated customers.")] = 2000,
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 1,
    cdnow_copies: Annotated[int, typer.Option(
        min=1, help="Measure CDNOW made this many times larger (each customer copied, "
        "dates and amounts jittered).")] = 1,
    kinds: Annotated[str, typer.Option(help="Model kinds, comma-separated.")] =
        "customer-kmeans,river-kmeans",
    archetypes: Annotated[str, typer.Option(
        help="Simulated archetypes: default, or sixty-days (behaviour changes late).")] =
        "default",
    reservoir_size: Annotated[int | None, typer.Option(
        min=2, help="model.reservoir_size for the runs (default: the setting's).")] = None,
) -> None:
    """Inertia vs batch k-means on CDNOW, ARI on simulated archetypes, by model kind."""
    from streamseg_bench.quality import MODEL_KINDS, quality

    chosen = tuple(kind.strip() for kind in kinds.split(",") if kind.strip())
    unknown = sorted(set(chosen) - set(MODEL_KINDS))
    if unknown or not chosen:
        raise typer.BadParameter(f"--kinds: {', '.join(unknown) or 'none given'}; choose "
                                 f"from {', '.join(MODEL_KINDS)}")
    from streamseg_bench.simulate import ARCHETYPE_SETS

    if archetypes not in ARCHETYPE_SETS:
        raise typer.BadParameter(f"--archetypes: {archetypes}; choose from "
                                 f"{', '.join(ARCHETYPE_SETS)}")
    model = {} if reservoir_size is None else {"reservoir_size": reservoir_size}
    _print_json(quality(customers, seed, cdnow_copies, chosen, archetypes, model))


@bench_app.command("flapping")
def bench_flapping(
    customers: Annotated[int, typer.Option(help="Simulated customers.")] = 2000,
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 3,
) -> None:
    """Share of customers changing segment > 2 times in the second half of a stationary
    stream, without and with hysteresis."""
    from streamseg_bench.flapping import flapping

    _print_json(flapping(customers, seed, hysteresis=(0.0, 0.2)))


@bench_app.command("throughput")
def bench_throughput(
    repeat: Annotated[int, typer.Option(help="Runs of each input.")] = 3,
) -> None:
    """Events/s of the pipeline on the embedded default (SQLite) and a larger file."""
    from streamseg_bench.throughput import throughput

    _print_json(throughput(repeat))


@bench_app.command("kafka")
def bench_kafka(
    events: Annotated[int, typer.Option(help="Events produced.")] = 200_000,
    customers: Annotated[int, typer.Option(help="Distinct customers.")] = 20_000,
    rate: Annotated[float, typer.Option(help="Offered rate for the latency part.")] = 2_000,
    seconds: Annotated[float, typer.Option(help="Duration of the latency part.")] = 20.0,
    kafka: Annotated[str, typer.Option(help="Bootstrap servers.")] = "127.0.0.1:9092",
    redis_url: Annotated[str, typer.Option("--redis", help="Redis URL.")] = (
        "redis://127.0.0.1:6379/0"),
    batch_size: Annotated[int, typer.Option(
        help="source.batch_size of the throughput part (a backlog: bigger batches write "
        "each customer once per batch).")] = 10_000,
) -> None:
    """Ceiling (bare consumer) vs full service on one topic, latency, Redis bytes/customer.

    Needs the broker and Redis: `scripts/services up`.
    """
    from streamseg_bench import kafka as bench_kafka

    _print_json(bench_kafka.run(events, customers, rate, seconds, kafka, redis_url,
                                batch_size=batch_size))


@bench_app.command("redis")
def bench_redis(
    customers: Annotated[int, typer.Option(min=1, help="Customers written.")] = 100_000,
    seconds: Annotated[float, typer.Option(min=0.1, help="Length of each write run.")] = 10.0,
    writers: Annotated[str, typer.Option(help="Writer processes per run, e.g. 1,2,4.")] = "1,2,4",
    batches: Annotated[str | None, typer.Option(help="Customers per batch, e.g. 500,100 (the "
        "first also for memory); default source.batch_size's default and 100.")] = None,
    modes: Annotated[str, typer.Option(help="store (write_batch, as a worker) and/or replay "
        "(batches encoded up front: least client work).")] = "store,replay",
    redis_url: Annotated[str | None, typer.Option("--redis", help="This Redis, under a fresh "
        "prefix; default: a private redis-server.")] = None,
    buckets: Annotated[int | None, typer.Option(min=1, help="Default customers / 50.")] = None,
) -> None:
    """Limits of one Redis: customers per GiB; customer writes/s by 1, 2, 4 writer
    processes and redis-server's CPU. Table on stderr, JSON on stdout."""
    from streamseg_bench import redis_limits

    try:
        options = redis_limits.parse_options(writers, batches, modes)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    result = redis_limits.run(customers, seconds, *options, redis_url=redis_url,
                              buckets=buckets)
    typer.echo(redis_limits.table(result), err=True)
    _print_json(result)


@bench_app.command("scale")
def bench_scale(
    customers: Annotated[int, typer.Option(
        min=10, help="Simulated customers (about 20 events each).")] = 12_000,
    partitions: Annotated[int, typer.Option(
        min=1, help="Partitions of the input topic (at least the most workers).")] = 8,
    workers: Annotated[str, typer.Option(
        help="Worker counts to measure, comma-separated.")] = "1,2,4",
    repeats: Annotated[int, typer.Option(min=1, help="Runs of each worker count.")] = 3,
    kafka: Annotated[str, typer.Option(help="Bootstrap servers.")] = "127.0.0.1:9092",
    redis_url: Annotated[str, typer.Option("--redis", help="Redis URL.")] = (
        "redis://127.0.0.1:6379/0"),
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 0,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Also write the JSON result to this file.")] = None,
    logs: Annotated[Path | None, typer.Option(
        help="Keep each worker's config and log under this folder (default: a temporary "
        "folder, removed).")] = None,
) -> None:
    """Events/s, CPU per event and quality with 1, 2, 4 workers (separate processes) on
    one topic: the medians as a table, the issue's targets, then the JSON.

    Needs the broker and Redis: `scripts/services up`.
    """
    from streamseg_bench import scale

    try:
        counts = sorted({int(part) for part in workers.split(",") if part.strip()})
    except ValueError:
        typer.echo(f"error: --workers {workers!r}: comma-separated integers", err=True)
        raise typer.Exit(2) from None
    if not counts or counts[0] < 1:
        typer.echo(f"error: --workers {workers!r}: at least one count, each >= 1", err=True)
        raise typer.Exit(2)
    try:
        result = scale.run(customers, partitions, counts, repeats, kafka, redis_url, seed,
                           logs=logs, say=lambda line: typer.echo(line, err=True))
    except scale.BenchError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    summary = {int(n): row for n, row in result["summary"].items()}
    typer.echo(scale.format_table(summary))
    typer.echo(scale.format_targets(result["targets"]))
    for note in result["warnings"]:
        typer.echo(f"warning: {note}")
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        typer.echo(f"wrote {json_path}", err=True)
    _print_json(result)


@bench_app.command("traits")
def bench_traits(
    cutoffs: Annotated[str, typer.Option(
        help="Cutoff days (YYYY-MM-DD, comma-separated): events up to each are replayed, "
        "the 90 days after it are the outcome.")] = "1997-06-30,1997-09-30,1997-12-31,1998-03-31",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of the table.")] = (
        False),
) -> None:
    """Predictive traits vs BG/NBD (x Gamma-Gamma) and recency on the bundled CDNOW sample:
    purchase AUC and calibration error (deciles), spend RMSE and Spearman, per cutoff.

    Needs lifetimes (pip install -e ".[bench]"). Exits 1 when a column could not be
    measured, e.g. a store without traits (the others are still printed).
    """
    from streamseg_bench import traits
    from streamseg_bench.bgnbd import LifetimesMissing
    from streamseg_bench.holdout import parse_days

    try:
        days = parse_days(cutoffs)
    except ValueError as error:
        typer.echo(f"error: --cutoffs: {error}", err=True)
        raise typer.Exit(2) from None
    try:
        result = traits.run(cutoffs=days, say=lambda line: typer.echo(line, err=True))
    except (LifetimesMissing, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        _print_json(result)
    else:
        typer.echo(traits.format_report(result))
    if any("error" in m for entry in result["cutoffs"] for m in entry["methods"].values()):
        raise typer.Exit(1)
