"""Predictive traits against the standard (``streamseg bench traits``).

For each cutoff, the events of the bundled CDNOW sample up to the cutoff day are replayed
through the service (a file replay into a fresh SQLite store, as ``bench quality``
does), every customer's traits are read back as ``streamseg export`` writes them, and
they are compared with what each customer did in the ``horizon_days`` after the cutoff
(see :mod:`streamseg_bench.holdout`):

- purchase (bought at least once): ROC AUC, and expected calibration error over deciles
  of predicted probability;
- spend (sum of amounts): RMSE and Spearman correlation.

Side by side, on the same purchases up to the same cutoff: BG/NBD (its expected number
of purchases ranks for AUC; its P(at least one purchase) is calibrated) and BG/NBD x
Gamma-Gamma for spend, fitted with ``lifetimes`` (:mod:`streamseg_bench.bgnbd`), and a
trivial baseline, recency alone (fewer days since the last purchase ranks higher; it has
no probability or amount, so no calibration error or RMSE).

The customers are those seen up to the cutoff: every customer with a purchase on or
before it (in the sample, everyone from the cutoff of 1997-06-30 on, since all of them
first bought in 1997's first quarter). The scores are in :mod:`streamseg_bench.scoring`.

Each gap between streamseg and BG/NBD comes with its 95% paired bootstrap interval over
the customers (:func:`intervals`), and streamseg's calibration error with its own: a
miss of a few thousandths is told from one the sample can see.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.config import SAMPLE_CSV, SAMPLE_PATH, Settings
from streamseg_bench import bgnbd
from streamseg_bench.common import run_file
from streamseg_bench.holdout import Transactions, write_sample_prefix
from streamseg_bench.scoring import (
    auc_difference,
    bootstrap_interval,
    expected_calibration_error,
    rmse,
    rmse_difference,
    roc_auc,
    spearman,
)

#: The issue's cutoffs: each leaves 90 days of the sample (which ends 1998-06-30) after it.
CUTOFFS = (date(1997, 6, 30), date(1997, 9, 30), date(1997, 12, 31), date(1998, 3, 31))
HORIZON_DAYS = 90
#: The issue's targets for the streamseg traits, at every cutoff.
MAX_CALIBRATION_ERROR = 0.03
#: The columns, in order, with their table headings.
METHODS = {"streamseg": "streamseg", "bgnbd": "BG/NBD (xGG)", "recency": "recency"}
METRICS = {"purchase_auc": "purchase AUC", "purchase_ece": "purchase ECE (deciles)",
           "spend_rmse": "spend RMSE ($)", "spend_spearman": "spend Spearman"}
#: Groups of customers by their orders up to the cutoff (lowest, highest; None: no
#: bound), for where the spend's errors are (:func:`spend_by_orders`).
ORDER_GROUPS = ((1, 1), (2, 4), (5, 14), (15, None))


class NoTraits(RuntimeError):
    """The store's export has no traits (or not for this horizon)."""


def traits_from_documents(
    documents: Sequence[dict[str, Any]], horizon_days: int
) -> dict[str, tuple[float, float]]:
    """Each exported customer's (purchase_probability, expected_spend), for those that
    have traits (export writes ``null`` for a customer without purchases).

    Raises :class:`NoTraits` when no document has any, or one has them for another
    horizon.

    >>> doc = {"customer_id": "7", "traits": {"purchase_probability": 0.25,
    ...        "expected_spend": 12.5, "horizon_days": 90}}
    >>> traits_from_documents([doc, {"customer_id": "8", "traits": None}], 90)
    {'7': (0.25, 12.5)}
    >>> traits_from_documents([{"customer_id": "7", "segment": 1}], 90)
    Traceback (most recent call last):
    ...
    streamseg_bench.traits.NoTraits: this store has no traits (none of its 1 customers has \
any in `streamseg export`)
    """
    found: dict[str, tuple[float, float]] = {}
    for document in documents:
        traits = document.get("traits")
        if not traits:
            continue
        if traits.get("horizon_days") != horizon_days:
            raise NoTraits(f"the store's traits are for {traits.get('horizon_days')!r} days, "
                           f"the benchmark's outcomes for {horizon_days}")
        found[str(document["customer_id"])] = (float(traits["purchase_probability"]),
                                               float(traits["expected_spend"]))
    if not found:
        raise NoTraits(f"this store has no traits (none of its {len(documents)} customers "
                       "has any in `streamseg export`)")
    return found


def exported_documents(settings: Settings) -> list[dict[str, Any]]:
    """Every line ``streamseg export`` writes for this store (the public read path)."""
    from streamseg import cli  # the command itself, so the benchmark reads what users read

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export.jsonl"
        with contextlib.redirect_stdout(io.StringIO()):  # its "exported N customers" line
            cli.export(config=None, store=settings.store.uri, out=str(out))
        with out.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def score(
    bought: np.ndarray, spend: np.ndarray, ranking: np.ndarray,
    probability: np.ndarray | None, amount: np.ndarray | None,
) -> dict[str, float | None]:
    """The four scores of one method (``None`` where it makes no such prediction)."""
    return {
        "purchase_auc": _rounded(roc_auc(bought, ranking)),
        "purchase_ece": None if probability is None else _rounded(
            expected_calibration_error(bought, probability)),
        "spend_rmse": None if amount is None else _rounded(rmse(spend, amount)),
        "spend_spearman": _rounded(spearman(spend, ranking if amount is None else amount)),
        # Calibration in the large: compare with the cutoff's buyer_share and mean_spend.
        "mean_probability": None if probability is None else _rounded(
            float(probability.mean())),
        "mean_expected_spend": None if amount is None else _rounded(float(amount.mean())),
    }


def spend_by_orders(
    orders: np.ndarray, spend: np.ndarray, predicted: dict[str, np.ndarray | None],
) -> list[dict[str, Any]]:
    """Per group of :data:`ORDER_GROUPS`: its customers, their mean spend, and per method
    its mean predicted spend and sum of squared errors (the RMSE's share of the group).

    >>> groups = spend_by_orders(np.array([1, 1, 3, 20]), np.array([0.0, 2.0, 10.0, 90.0]),
    ...                          {"a": np.array([1.0, 1.0, 12.0, 60.0]), "b": None})
    >>> [(g["orders"], g["customers"], g["mean_spend"]) for g in groups]
    [('1', 2, 1.0), ('2-4', 1, 10.0), ('5-14', 0, None), ('15+', 1, 90.0)]
    >>> groups[3]["methods"]
    {'a': {'mean_expected_spend': 60.0, 'squared_error': 900.0}}
    """
    out = []
    for low, high in ORDER_GROUPS:
        mask = (orders >= low) & (orders <= (high if high is not None else orders.max()))
        name = f"{low}+" if high is None else (str(low) if low == high else f"{low}-{high}")
        count = int(mask.sum())
        out.append({
            "orders": name, "customers": count,
            "mean_spend": _rounded(float(spend[mask].mean())) if count else None,
            "methods": {method: {
                "mean_expected_spend": _rounded(float(amount[mask].mean())),
                "squared_error": round(float(((amount[mask] - spend[mask]) ** 2).sum()), 2),
            } for method, amount in predicted.items() if amount is not None and count},
        })
    return out


def _streamseg(
    csv_path: Path, folder: Path, ids: list[str], bought: np.ndarray, spend: np.ndarray,
    horizon_days: int,
) -> tuple[dict[str, Any], np.ndarray | None, np.ndarray | None]:
    """Its scores, and its purchase probabilities and expected spends (None: no traits)."""
    # Default settings (and STREAMSEG_* variables), as `streamseg export` reads them.
    summary, settings = run_file(str(csv_path), folder,
                                 {"source": {"csv": SAMPLE_CSV.model_dump()}})
    keys = settings.customer_key  # the stored id: a pseudonym when the settings say so
    try:
        traits = traits_from_documents(exported_documents(settings), horizon_days)
    except NoTraits as error:
        return {"error": str(error), "replayed_events": summary.processed}, None, None
    missing = [c for c in ids if keys(c) not in traits]
    if missing:
        return {"error": f"{len(missing)} customers seen up to the cutoff have no traits "
                f"(e.g. {missing[0]!r})", "replayed_events": summary.processed}, None, None
    probability = np.array([traits[keys(c)][0] for c in ids])
    amount = np.array([traits[keys(c)][1] for c in ids])
    return {**score(bought, spend, probability, probability, amount),
            "replayed_events": summary.processed}, probability, amount


def _bgnbd(log: Transactions, cutoff: date, ids: list[str], bought: np.ndarray,
           spend: np.ndarray, horizon_days: int
           ) -> tuple[dict[str, Any], np.ndarray | None, np.ndarray | None]:
    """Its scores, and its expected purchases (its ranking) and spends (None: no fit)."""
    try:
        forecast = bgnbd.fit_and_forecast(bgnbd.summarise(log, cutoff), horizon_days)
    except bgnbd.FitError as error:
        return {"error": str(error)}, None, None
    assert forecast.customer_ids == ids, "the summary covers the customers seen"
    result: dict[str, Any] = score(bought, spend, forecast.expected_purchases,
                                   forecast.purchase_probability, forecast.expected_spend)
    # Its P(>= 1 purchase) ranks a little differently from its expected purchases.
    result["purchase_auc_of_probability"] = _rounded(
        roc_auc(bought, forecast.purchase_probability))
    result["bgnbd_params"] = forecast.bgnbd_params
    result["gamma_gamma_params"] = forecast.gamma_gamma_params
    result["gamma_gamma_customers"] = forecast.gamma_gamma_customers
    return result, forecast.expected_purchases, forecast.expected_spend


def targets(methods: dict[str, dict[str, Any]]) -> dict[str, bool | None]:
    """The issue's targets for the streamseg column (``None``: not measurable).

    >>> targets({"streamseg": {"purchase_auc": 0.8, "purchase_ece": 0.02, "spend_rmse": 30},
    ...          "bgnbd": {"purchase_auc": 0.79, "spend_rmse": 31}})
    {'auc_at_least_bgnbd': True, 'spend_rmse_at_most_bgnbd_gg': True, 'ece_at_most_0.03': True}
    >>> targets({"streamseg": {"error": "no traits"}, "bgnbd": {}})["ece_at_most_0.03"] is None
    True
    """
    ours, theirs = methods["streamseg"], methods["bgnbd"]

    def compare(key: str, better: Callable[[float, float], bool], bar: float | None) -> Any:
        mine = ours.get(key)
        other = bar if bar is not None else theirs.get(key)
        return None if mine is None or other is None else bool(better(mine, other))

    return {
        "auc_at_least_bgnbd": compare("purchase_auc", lambda a, b: a >= b, None),
        "spend_rmse_at_most_bgnbd_gg": compare("spend_rmse", lambda a, b: a <= b, None),
        f"ece_at_most_{MAX_CALIBRATION_ERROR}": compare(
            "purchase_ece", lambda a, b: a <= b, MAX_CALIBRATION_ERROR),
    }


def intervals(bought: np.ndarray, spend: np.ndarray,
              ours: tuple[np.ndarray | None, np.ndarray | None],
              theirs: tuple[np.ndarray | None, np.ndarray | None]) -> dict[str, Any]:
    """streamseg's AUC and spend RMSE less BG/NBD's (x Gamma-Gamma's), and streamseg's
    ECE, each with its 95% bootstrap interval over the customers
    (:func:`.scoring.bootstrap_interval`; the differences paired): whether a gap in the
    table is more than this sample's chance (None: a method made no such prediction)."""
    (our_probability, our_spend), (their_ranking, their_spend) = ours, theirs
    return {
        "auc_less_bgnbd": None if our_probability is None or their_ranking is None
        else bootstrap_interval(auc_difference, bought, our_probability, their_ranking),
        "spend_rmse_less_bgnbd_gg": None if our_spend is None or their_spend is None
        else bootstrap_interval(rmse_difference, spend, our_spend, their_spend),
        "purchase_ece": None if our_probability is None
        else bootstrap_interval(expected_calibration_error, bought, our_probability),
    }


def run_cutoff(
    log: Transactions, source: Path, cutoff: date, folder: Path, horizon_days: int,
) -> dict[str, Any]:
    """One cutoff: replay, read traits, fit BG/NBD, score all three against outcomes."""
    if cutoff >= log.last_day():
        raise ValueError(f"cutoff {cutoff} leaves no days of the log after it")
    ids = sorted(log.until(cutoff).customers())
    if not ids:
        raise ValueError(f"cutoff {cutoff}: no purchases on or before it")
    bought, spend = log.outcomes(cutoff, horizon_days, ids)
    prefix = folder / "events.csv"
    events = write_sample_prefix(source, cutoff, prefix)
    recency = log.days_since_last(cutoff, ids)
    ours, our_probability, our_spend = _streamseg(prefix, folder, ids, bought, spend,
                                                  horizon_days)
    theirs, their_ranking, their_spend = _bgnbd(log, cutoff, ids, bought, spend, horizon_days)
    methods = {"streamseg": ours, "bgnbd": theirs,
               "recency": score(bought, spend, -recency, None, None)}
    history = log.until(cutoff)
    counts = dict(zip(*np.unique(history.customer_ids.astype(str), return_counts=True),
                      strict=True))
    orders = np.array([counts[c] for c in ids])
    # Outcomes observed up to the log's end only: a short last window is said, not hidden.
    observed = min(horizon_days, (log.last_day() - cutoff).days)
    return {
        "cutoff": cutoff.isoformat(), "events_up_to_cutoff": events, "customers": len(ids),
        "buyers": int(bought.sum()), "buyer_share": round(float(bought.mean()), 4),
        "mean_spend": round(float(spend.mean()), 4),
        "spend_std": round(float(spend.std()), 4), "outcome_days_observed": observed,
        "methods": methods, "targets": targets(methods),
        "intervals": intervals(bought, spend, (our_probability, our_spend),
                               (their_ranking, their_spend)),
        "spend_by_orders": spend_by_orders(
            orders, spend, {"streamseg": our_spend, "bgnbd": their_spend}),
    }


def run(
    source: Path = SAMPLE_PATH, cutoffs: Sequence[date] = CUTOFFS,
    horizon_days: int = HORIZON_DAYS, say: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Every cutoff, in order (``say`` reports progress)."""
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be >= 1, got {horizon_days}")
    log = Transactions.read_sample_csv(source)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for cutoff in cutoffs:
            say(f"cutoff {cutoff}: replaying and fitting")
            folder = Path(tmp) / cutoff.isoformat()
            folder.mkdir()
            results.append(run_cutoff(log, source, cutoff, folder, horizon_days))
    return {
        "source": str(source), "horizon_days": horizon_days,
        "customers": "every customer with a purchase on or before the cutoff",
        "outcome": f"purchases dated 1 to {horizon_days} days after the cutoff",
        "lifetimes": bgnbd.lifetimes_version(),
        "cutoffs": results,
    }


def _cell(method: dict[str, Any], key: str) -> str:
    if "error" in method:
        return "error"
    value = method.get(key)
    return "n/a" if value is None else f"{value:.4f}"


def format_table(result: dict[str, Any]) -> str:
    """The measured scores: one block of rows per cutoff, one column per method."""
    head = f"{'cutoff':<11} {'customers':>9} {'buyers':>6}  {'':<23}" + "".join(
        f"{label:>14}" for label in METHODS.values())
    lines = [f"customers: {result['customers']}; outcome: {result['outcome']}", head,
             "-" * len(head)]
    for entry in result["cutoffs"]:
        lead = f"{entry['cutoff']:<11} {entry['customers']:>9} {entry['buyers']:>6}  "
        for key, label in METRICS.items():
            cells = "".join(f"{_cell(entry['methods'][m], key):>14}" for m in METHODS)
            lines.append(f"{lead}{label:<23}{cells}")
            lead = " " * len(lead)
    lines += [f"note: {entry['cutoff']}: outcomes observed for {entry['outcome_days_observed']} "
              f"of {result['horizon_days']} days only (the log ends before)"
              for entry in result["cutoffs"]
              if entry["outcome_days_observed"] < result["horizon_days"]]
    for method, label in METHODS.items():
        errors = {entry["methods"][method]["error"] for entry in result["cutoffs"]
                  if "error" in entry["methods"][method]}
        lines += [f"{label}: {error}" for error in sorted(errors)]
    return "\n".join(lines)


def format_targets(result: dict[str, Any]) -> str:
    """The issue's targets for the streamseg column, met or not, per cutoff; then how far
    from BG/NBD's each gap is, with its bootstrap interval."""
    word = {True: "met", False: "NOT met", None: "not measured"}
    lines = ["targets (streamseg): AUC >= BG/NBD's, spend RMSE <= BG/NBD x Gamma-Gamma's, "
             f"ECE <= {MAX_CALIBRATION_ERROR}"]
    for entry in result["cutoffs"]:
        parts = [f"{name} {word[value]}" for name, value in entry["targets"].items()]
        lines.append(f"  {entry['cutoff']}: " + ", ".join(parts))
    lines.append("with 95% bootstrap intervals over the customers: streamseg less BG/NBD "
                 "(x GG), paired; streamseg's ECE:")
    for entry in result["cutoffs"]:
        parts = []
        for key, label in (("auc_less_bgnbd", "AUC"), ("spend_rmse_less_bgnbd_gg", "spend RMSE"),
                           ("purchase_ece", "ECE")):
            gap = entry.get("intervals", {}).get(key)
            sign = "+" if key != "purchase_ece" else ""
            parts.append(f"{label} n/a" if gap is None else
                         f"{label} {gap['value']:{sign}.4f} [{gap['low']:{sign}.4f}, "
                         f"{gap['high']:{sign}.4f}]")
        lines.append(f"  {entry['cutoff']}: " + "; ".join(parts))
    return "\n".join(lines)


def format_report(result: dict[str, Any]) -> str:
    """The table, then the targets."""
    return format_table(result) + "\n" + format_targets(result)
