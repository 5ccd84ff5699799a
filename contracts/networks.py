"""The home-network groups of silver ``density_by_group``: one vocabulary for what makes them and what reads them.

A phone's group is where its home network is from, seen from the country of the cell (``geo.networks`` classifies;
``forecasting.people`` reads people from them). Groups are coarse on purpose: a regional group spans at least
three countries wherever it is counted, so that no count is one foreign nationality's (docs/privacy.md).
"""

from __future__ import annotations

DOMESTIC, NEIGHBOURING, VISITOR, OTHER, UNKNOWN = "domestic", "neighbouring", "visitor", "other", "unknown"
# The groups a network belongs to wherever it is seen (geo/data/mcc_groups.csv), "other" last.
REGIONAL_GROUPS = (
    VISITOR,
    "north_africa",
    "west_central_africa",
    "east_africa",
    "middle_east_south_asia",
    OTHER,
)
# Every value of the ``group`` column of silver ``density_by_group``.
GROUPS = (DOMESTIC, NEIGHBOURING, *REGIONAL_GROUPS, UNKNOWN)
# Where a migrant's phone can be while it roams on its home network (or one not listed): every group but the
# residents' own networks and the visitors'. A local SIM makes it domestic.
ROAMING_GROUPS = tuple(g for g in GROUPS if g not in (DOMESTIC, VISITOR))
