"""The scenario engine against a counterfactual world (jobs.analysis.counterfactual), printed per route and week.

Needs the baseline world through the pipeline (a release with people series and its route network, and the
simulator's truth) and the intervened world's truth (same seed, days and scale, with the closure), and the scenario a
planner would write for that closure. See README.md beside this file for the runs behind the reported figures.

    .venv/bin/python experiments/scenario-check/check.py --store /tmp/cf/var/store --baseline-truth /tmp/cf/var/truth \
        --intervened-truth /tmp/cf/var-sabratha/truth --spec experiments/scenario-check/sabratha.toml \
        --routes central_mediterranean,eastern_mediterranean
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from forecasting.scenario import load_parameters, load_spec
from geo.catalogue import load_catalogue
from jobs.analysis.counterfactual import compare, predicted_weekly, read_release, simulated_weekly


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True, help="the baseline world's published store")
    ap.add_argument("--baseline-truth", type=Path, required=True)
    ap.add_argument("--intervened-truth", type=Path, required=True)
    ap.add_argument("--spec", type=Path, required=True, help="the planner's scenario (TOML or JSON)")
    ap.add_argument("--routes", required=True, help="comma-separated: the closed route and the diversion routes")
    ap.add_argument("--weeks", type=int, default=8)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument(
        "--parameters", type=Path, help="behaviour parameters (routecast scenario estimate); default: the engine's"
    )
    args = ap.parse_args()

    catalogue = load_catalogue()
    spec = load_spec(args.spec)
    start = min(i.start for i in spec.interventions)
    release = read_release(args.store)
    simulated = simulated_weekly(args.baseline_truth, args.intervened_truth, catalogue, start, args.weeks)
    parameters = load_parameters(args.parameters) if args.parameters else None
    predicted = predicted_weekly(release, spec, catalogue, start, args.weeks, n_draws=args.draws, parameters=parameters)
    routes = args.routes.split(",")
    table, rows = compare(simulated, predicted, routes)
    out = sys.stdout
    out.write(
        f"release {release.release_id}; scenario {spec.name!r} from {start}; arrivals at entry points, people\n\n"
    )
    shown = table[table["route_id"].isin(routes)]
    cols = ["route_id", "week", "baseline", "intervened", "simulated", "predicted", "lo80", "hi80", "covered80"]
    out.write(shown[cols].round(1).to_string(index=False) + "\n\n")
    out.write("| route | simulated change | predicted change | relative error | weeks in 80 % interval |\n")
    out.write("|---|---:|---:|---:|---:|\n")
    for r in rows:
        out.write(
            f"| {r.route_id} | {r.simulated:.0f} | {r.predicted:.0f} | {r.relative_error:.0%} | "
            f"{r.weeks_covered}/{r.weeks} |\n"
        )


if __name__ == "__main__":
    main()
