"""A scenario checked against the network and the forecast horizon, its targets resolved to crossing points."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pydantic import ValidationError

from forecasting.scenario.network import Network, NetworkError, PointKey, point_label, topological_order
from forecasting.scenario.parameters import DEFAULT_PARAMETERS, PLANNER, BlockParameters, ScenarioParameters
from forecasting.scenario.spec import CapacityCut, Closure, ScenarioError, ScenarioSpec, Surge, Target, _one_sentence

__all__ = ["ELSEWHERE", "Destination", "PlannedIntervention", "validate"]

# The destination of people diverted, by parameters the planner did not write, to a route the network does not show.
ELSEWHERE = "elsewhere"


@dataclass(frozen=True)
class Destination:
    """Where a share of the blocked people goes: the target as written and the points it resolves to (none for
    ``ELSEWHERE``: they leave the routes shown)."""

    label: str
    points: tuple[PointKey, ...]
    share: float  # mean share of the blocked people (0..1)
    columns: tuple[int, ...]  # which of the diversion's ``to`` it stands for (their shares add up)


@dataclass(frozen=True)
class PlannedIntervention:
    """One intervention of a valid scenario: ``index`` in the spec, its target's canonical ``label``, the ``points``
    it acts on and, for a closure or capacity cut, the resolved ``parameters`` and ``destinations``."""

    index: int
    intervention: Closure | CapacityCut | Surge
    label: str
    points: tuple[PointKey, ...]
    parameters: BlockParameters | None = None
    destinations: tuple[Destination, ...] = ()

    @property
    def blocks(self) -> bool:
        """True for a closure or capacity cut (people are held back), False for a surge."""
        return not isinstance(self.intervention, Surge)

    @property
    def field(self) -> str:
        return f"interventions[{self.index}]"


def _label(points: tuple[PointKey, ...], target: Target) -> str:
    """The target as written in full (a bare point id gets its route)."""
    return point_label(points[0]) if target.level == "point" else str(target)


def validate(
    spec: ScenarioSpec,
    network: Network,
    first_day: date,
    last_day: date,
    parameters: ScenarioParameters | None = None,
) -> tuple[PlannedIntervention, ...]:
    """Check ``spec`` against the network and the forecast horizon [``first_day``, ``last_day``]; resolve targets.

    ``ScenarioError`` with one sentence for: an unknown target or diversion destination, a date outside the
    horizon, two interventions on the same target (or two of the same sort, blocking or surge, on a shared point)
    whose dates overlap, a diversion that leads back to where people were blocked, and parameters that contradict
    each other (e.g. a divert_sd too large for the share).
    """
    parameters = parameters or DEFAULT_PARAMETERS
    planned = [_plan_one(i, iv, network, first_day, last_day, parameters) for i, iv in enumerate(spec.interventions)]
    _refuse_overlaps(planned)
    _refuse_loops(planned, network)
    return tuple(planned)


def _plan_one(
    index: int,
    iv: Closure | CapacityCut | Surge,
    network: Network,
    first_day: date,
    last_day: date,
    parameters: ScenarioParameters,
) -> PlannedIntervention:
    field = f"interventions[{index}]"
    for name in ("start", "end"):
        day = getattr(iv, name)
        if not first_day <= day <= last_day:
            raise ScenarioError(f"{field}.{name} {day} is outside the forecast horizon {first_day} to {last_day}")
    points = network.resolve(iv.target, f"{field}.target", sailing=isinstance(iv, Surge))
    if not points:
        raise ScenarioError(f"{field}.target {iv.target} has no crossing point to act on")
    label = _label(points, iv.target)
    if isinstance(iv, Surge):
        return PlannedIntervention(index, iv, label, points)
    try:
        block = parameters.for_target(label, iv.assumptions)
    except ValidationError as err:
        raise ScenarioError(f"{field}.assumptions: {_one_sentence(err)}") from None
    destinations = []
    planner = block.diversion.source == PLANNER
    elsewhere: list[int] = []
    for j, share in enumerate(block.diversion.to):
        if not planner and share.to.route is not None and share.to.route not in network.routes:
            # An estimate or default sends people to a route this network does not show (another caller's scope, a
            # release without it): they leave the routes shown, and nothing names where they went.
            elsewhere.append(j)
            continue
        where = f"{field}.assumptions.divert[{j}].to" if planner else f"{field} diversion"
        to_points = network.resolve(share.to, where)
        if not to_points:
            raise ScenarioError(f"{where} {share.to} has no crossing point to divert to")
        to_label = _label(to_points, share.to)
        destinations.append(Destination(to_label, to_points, share.share, (j,)))
    if elsewhere:
        gone = sum(block.diversion.to[j].share for j in elsewhere)
        destinations.append(Destination(ELSEWHERE, (), gone, tuple(elsewhere)))
    return PlannedIntervention(index, iv, label, points, block, tuple(destinations))


def _overlap(a: PlannedIntervention, b: PlannedIntervention) -> tuple[date, date] | None:
    start = max(a.intervention.start, b.intervention.start)
    end = min(a.intervention.end, b.intervention.end)
    return (start, end) if start <= end else None


def _refuse_overlaps(planned: list[PlannedIntervention]) -> None:
    for i, a in enumerate(planned):
        for b in planned[i + 1 :]:
            days = _overlap(a, b)
            if days is None:
                continue
            if a.label == b.label:
                where = a.label
            else:
                shared = sorted(set(a.points) & set(b.points))
                if not shared or a.blocks != b.blocks:
                    continue
                where = point_label(shared[0])
            raise ScenarioError(
                f"{a.field} ({a.intervention.kind}) and {b.field} ({b.intervention.kind}) both act on {where} "
                f"from {days[0]} to {days[1]}; merge them or make their dates not overlap"
            )


def _refuse_loops(planned: list[PlannedIntervention], network: Network) -> None:
    """A diversion whose people come back to where they were blocked would need a fixed point; refused."""
    edges = [(link.source, link.target) for link in network.links]
    for p in planned:
        for d in p.destinations:
            back = set(p.points) & network.downstream(d.points)
            if back:
                raise ScenarioError(
                    f"{p.field}: people diverted to {d.label} would pass {point_label(sorted(back)[0])} again, "
                    "where they were blocked; divert them elsewhere"
                )
            edges += [(a, b) for a in p.points for b in d.points]
    try:
        topological_order(network.keys, edges)
    except NetworkError as err:
        raise ScenarioError(f"the diversions and links form a loop: {err}") from None
