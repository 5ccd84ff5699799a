"""The privacy threshold's floor: no published count comes from fewer distinct devices than this.

A deployment may raise the threshold (``ROUTECAST_MIN_DEVICES``), never set it below the floor; the jobs refuse
to suppress with a lower one and serving refuses to start with one (docs/privacy.md).
"""

from __future__ import annotations

MIN_DEVICES_FLOOR = 15
