"""The ``streamseg`` command line.

``streamseg run`` with no arguments runs the embedded default: the bundled CDNOW sample
through the engine into a SQLite store under ``.streamseg/``, and prints the segments.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from streamseg.cli_bench import bench_app
from streamseg.config import ConfigError, Settings, load_settings
from streamseg.core.events import change_json_schema, event_json_schema

app = typer.Typer(
    help="Real-time customer segmentation: events in, live segments out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file.", show_default=False)
]
StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Store URI: memory://, sqlite:///PATH, redis://HOST:PORT/DB."),
]


def _settings(config: Path | None, overrides: dict[str, Any]) -> Settings:
    try:
        return load_settings(config, overrides)
    except (ConfigError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def _nested(**sections: dict[str, Any | None]) -> dict[str, Any]:
    """Flag values as nested overrides, leaving out flags that were not given."""
    result: dict[str, Any] = {}
    for section, values in sections.items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            result[section] = given
    return result


def _open_engine(settings: Settings) -> Any:
    from streamseg.engine import SegmentationEngine
    from streamseg.store import open_store

    try:
        store = open_store(settings.store)
    except Exception as error:  # noqa: BLE001 - shown to the user as is
        typer.echo(f"error: cannot open store {settings.store.uri}: {error}", err=True)
        raise typer.Exit(2) from None
    return SegmentationEngine(settings, store)


def _open_view(settings: Settings) -> Any:
    """A read-only view of the store and its model; a one-line error if it cannot be."""
    from streamseg.read import ReadError, open_view

    try:
        return open_view(settings)
    except ReadError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


@contextmanager
def _reading(settings: Settings) -> Iterator[Any]:
    """A read-only view for a read command: closed after it, and its disagreements with
    the store (:class:`~streamseg.read.ReadError`) shown as one line, exit code 2."""
    from streamseg.read import ReadError

    view = _open_view(settings)
    try:
        yield view
    except ReadError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    finally:
        view.close()


@app.command()
def run(
    config: ConfigOption = None,
    source: Annotated[str | None, typer.Option(
        help="Input: .jsonl/.csv path, '-' for stdin, kafka://HOST:PORT/TOPIC, sample:cdnow."
    )] = None,
    store: StoreOption = None,
    sink: Annotated[str | None, typer.Option(
        help="Segment changes: .jsonl path, '-' for stdout, kafka://HOST:PORT/TOPIC."
    )] = None,
    dead_letter: Annotated[str | None, typer.Option(
        help="Rejected input: .jsonl path, '-', kafka://HOST:PORT/TOPIC."
    )] = None,
    progress: Annotated[bool, typer.Option(help="Progress bar on file input.")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO.")] = False,
) -> None:
    """Run the stream: read events, keep segments, publish changes."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings(config, _nested(
        source={"uri": source}, store={"uri": store},
        sinks={"changes": sink, "dead_letter": dead_letter},
    ))
    if settings.api.enabled:
        _check_api_exposure(settings)  # before anything is opened or consumed
    from streamseg.app import Application
    from streamseg.core.profiles import add_traits, format_table, profile_segments
    from streamseg.processing.lease import LeaseLost
    from streamseg.store import LeaseHeld

    try:
        application = Application(settings)
    except (OSError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except LeaseHeld as error:
        typer.echo(f"error: {error}. One worker at a time may write a store's model; stop "
                   "the other worker, or give this one another store.", err=True)
        raise typer.Exit(3) from None
    api_handle = None
    if settings.api.enabled:
        from streamseg.serve.api import create_app, start_api_in_thread

        # The API opens its own store connection, except for an in-process store.
        shared = application.store if settings.store.uri.startswith("memory://") else None
        api_handle = start_api_in_thread(create_app(settings, shared), settings.api.host,
                                         settings.api.port)
    try:
        with application.handle_signals():
            try:
                summary = application.run(progress=progress and sys.stderr.isatty())
            except LeaseLost as error:
                typer.echo(f"error: {error}", err=True)
                raise typer.Exit(3) from None
        engine = application.engine
        profiles = profile_segments(
            application.store.iter_customers(), engine.now(),
            settings.features.half_life_days, names=engine.segment_names,
        )
        if engine.traits is not None:
            add_traits(profiles, engine.traits.total().segment_means(),
                       settings.traits.horizon_days)
    finally:
        if api_handle is not None:
            api_handle.close()
        application.close()
    if settings.sinks.changes != "-":
        typer.echo(format_table(profiles))
    typer.echo(summary.line(), err=settings.sinks.changes == "-")


@app.command()
def reseed(
    k: Annotated[int, typer.Option("--k", min=2, max=100, help="The new number of segments.")],
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Re-segment the stored customers into K segments, without replaying events.

    Stop the service first. Then set model.n_clusters to K in the configuration.
    """
    settings = _settings(config, _nested(store={"uri": store}))
    from streamseg.core.profiles import format_table, profile_segments
    from streamseg.engine.reseed import reseed as run_reseed

    try:
        summary = run_reseed(settings, k)
    except (OSError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    settings = _settings(config, _nested(store={"uri": store}, model={"n_clusters": k}))
    engine = _open_engine(settings)
    try:
        typer.echo(format_table(profile_segments(
            engine.store.iter_customers(), engine.now(), settings.features.half_life_days,
            names=engine.segment_names)))
    finally:
        engine.store.close()
    typer.echo(f"reseeded {summary.customers} customers into {k} segments; "
               f"{summary.changes} segment changes published. Set model.n_clusters: {k} "
               "(or STREAMSEG_MODEL__N_CLUSTERS) before the next run.")


@app.command()
def config(
    config: ConfigOption = None,
    reference: Annotated[bool, typer.Option(
        "--reference", help="Every option with its default and meaning (Markdown).")] = False,
) -> None:
    """Print the effective configuration (secrets masked), or the option reference."""
    from streamseg.config import reference_table

    if reference:
        typer.echo(reference_table())
        return
    import yaml

    settings = _settings(config, {})
    typer.echo(yaml.safe_dump(json.loads(settings.model_dump_json()), sort_keys=False))


@app.command()
def schema(
    changes: Annotated[bool, typer.Option(
        "--changes", help="The change stream's CloudEvents (segment and risk-band changes) "
        "instead of the input event."
    )] = False,
) -> None:
    """Print the JSON Schema of input events (or of change events)."""
    typer.echo(json.dumps(change_json_schema() if changes else event_json_schema(), indent=2))


@app.command()
def segments(
    config: ConfigOption = None,
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON with centroid vectors.")] = False,
) -> None:
    """One row per segment: size and profile in original units."""
    from streamseg.core.profiles import add_traits, format_table, profile_segments

    settings = _settings(config, _nested(store={"uri": store}))
    with _reading(settings) as view:
        centroids = view.centroids
        profiles = profile_segments(view.customers(), view.now(),
                                    settings.features.half_life_days, centroids,
                                    view.segment_names)
        quality = None
        if view.traits is not None:
            total = view.traits.total()
            add_traits(profiles, total.segment_means(), settings.traits.horizon_days)
            quality = total.quality.summary()
    if as_json:
        # A list, as before traits; each segment's traits carry the trait model's running
        # quality (one model for all segments: the same figures in each).
        typer.echo(json.dumps([p.to_dict(with_centroid=True) | (
            {"traits": {**p.traits, "model_quality": quality}} if p.traits else {})
            for p in profiles], indent=2))
    else:
        typer.echo(format_table(profiles))


@app.command()
def get(
    customer_id: Annotated[str, typer.Argument(help="The customer's id.")],
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Show one customer's segment, features and traits."""
    settings = _settings(config, _nested(store={"uri": store}))
    with _reading(settings) as engine:
        state = engine.store.get(settings.customer_key(customer_id))
        if state is None:
            engine.check_customers()  # none at all, though counted: say that instead
            typer.echo(f"error: no customer {customer_id!r} in {engine.where}", err=True)
            raise typer.Exit(1)
        typer.echo(json.dumps(_customer_document(state, engine, settings), indent=2))


@app.command()
def export(
    config: ConfigOption = None,
    store: StoreOption = None,
    out: Annotated[str, typer.Option(help="Output .jsonl path, '-' for stdout.")] = "-",
) -> None:
    """Every customer as JSON Lines: segment, features (original units), vector, traits."""
    settings = _settings(config, _nested(store={"uri": store}))
    with _reading(settings) as engine:
        customers = engine.customers()  # checked before the output is opened
        handle = sys.stdout if out == "-" else open(out, "w", encoding="utf-8")  # noqa: SIM115
        try:
            count = 0
            for state in customers:
                handle.write(json.dumps(_customer_document(state, engine, settings)) + "\n")
                count += 1
        finally:
            if handle is not sys.stdout:
                handle.close()
    if out != "-":
        typer.echo(f"exported {count} customers to {out}")


def _customer_document(state: Any, engine: Any, settings: Settings) -> dict[str, Any]:
    features = traits = None
    if state.features.has_purchases:
        now = max(engine.now(), state.features.reference_time or 0.0)
        features = settings.features.snapshot(state.features, now).to_dict()
        if engine.traits is not None:  # as of the service clock, like the features
            traits = engine.traits.predict(state.features, now).to_dict()
    return {
        "customer_id": state.customer_id,
        "segment": state.segment,
        "segment_name": state.segment_name,
        "features": features,
        "vector": state.vector,
        "updated_at": state.updated_at,
        "model_version": state.model_version,
        "traits": traits,
    }


@app.command()
def simulate(
    customers: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[Path, typer.Option(help="Events output (.jsonl).")] = Path("simulated.jsonl"),
    truth: Annotated[Path | None, typer.Option(
        help="Ground truth CSV (customer_id,archetype); default <out>.truth.csv."
    )] = None,
) -> None:
    """Write a synthetic stream of customer archetypes and its ground truth."""
    from streamseg_bench.simulate import write_stream

    count, truth_file = write_stream(out, customers, seed, truth)
    typer.echo(f"wrote {count} events for {customers} customers to {out}; truth in {truth_file}")


@app.command()
def api(
    config: ConfigOption = None,
    store: StoreOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
) -> None:
    """Serve the read API (GET /customers/{id}, /segments, /healthz, /readyz, /docs)."""
    settings = _settings(config, _nested(store={"uri": store}, api={"host": host, "port": port}))
    _check_api_exposure(settings)
    from streamseg.serve.api import serve_api

    try:
        serve_api(settings, settings.api.host, settings.api.port)
    except (OSError, ValueError) as error:
        typer.echo(f"error: cannot serve the read API: {error}", err=True)
        raise typer.Exit(2) from None


def _check_api_exposure(settings: Settings) -> None:
    """Stop with a clear error when the API would serve beyond loopback without tokens."""
    from streamseg.serve.auth import ApiExposedError, check_exposure

    try:
        check_exposure(settings.api.host, protected=bool(settings.api.token_list()))
    except ApiExposedError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


@app.command()
def report(
    config: ConfigOption = None,
    store: StoreOption = None,
    out: Annotated[Path, typer.Option(help="Output HTML file.")] = Path("report.html"),
    sample: Annotated[int, typer.Option(min=1, help="Customers drawn for the map.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of that sample.")] = 0,
) -> None:
    """Write one self-contained HTML page with plots of the segments."""
    settings = _settings(config, _nested(store={"uri": store}))
    from streamseg.report import write_report

    with _reading(settings) as view:
        path = write_report(settings, out, sample, seed, view=view)
    typer.echo(f"wrote {path}")


@app.command()
def evaluate(
    config: ConfigOption = None,
    store: StoreOption = None,
    k: Annotated[str | None, typer.Option(
        "--k", help="Also fit each k of a range (2..10) or list (3,5,8) on the sample: "
        "silhouette and inertia per k, and a recommended k.", show_default=False)] = None,
    sample: Annotated[int | None, typer.Option(
        min=10, help="Customers measured (default evaluate.sample).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Judge the live segments: silhouette, Davies-Bouldin, Calinski-Harabasz, inertia
    against batch k-means++ and stability, exact on a sample of customers."""
    settings = _settings(config, _nested(store={"uri": store}, evaluate={"sample": sample}))
    from streamseg.evaluate import draw_sample, format_evaluation
    from streamseg.evaluate import evaluate as run_evaluate
    from streamseg.evaluate.choice import parse_ks

    try:
        ks = parse_ks(k) if k is not None else []
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    seed = settings.evaluate.seed
    with _reading(settings) as view:
        drawn = draw_sample(view, settings.evaluate.sample, seed)
        result = run_evaluate(view, drawn, seed, ks)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo(format_evaluation(result))


# The benchmarks' commands (each imports its benchmark lazily: see streamseg.cli_bench).
app.add_typer(bench_app, name="bench")


if __name__ == "__main__":  # pragma: no cover
    app()
