import json

import pytest

from serving.store import NoRelease, UnsuppressedRelease, current_release_id, load_release


def test_loads_the_current_release(published):
    rel = load_release(published.store_dir)
    assert rel.release_id == current_release_id(published.store_dir)
    assert rel.horizon("density") == 28 and rel.horizon("frontex") == 6 and rel.horizon("iom-dtm") == 0
    assert rel.manifest["privacy"]["min_devices"] == 15


def test_no_release_yet(tmp_path):
    with pytest.raises(NoRelease, match="routecast nightly"):
        load_release(tmp_path)


@pytest.mark.parametrize(
    "privacy",
    [None, {"suppressed": False, "min_devices": 15}, {"suppressed": True, "min_devices": 14}, {"suppressed": True}],
)
def test_a_release_without_suppression_is_never_served(published, privacy):
    rel_id = current_release_id(published.store_dir)
    path = published.store_dir / "releases" / rel_id / "manifest.json"
    manifest = json.loads(path.read_text())
    if privacy is None:
        del manifest["privacy"]
    else:
        manifest["privacy"] = privacy
    path.write_text(json.dumps(manifest))
    with pytest.raises(UnsuppressedRelease, match="refusing to serve"):
        load_release(published.store_dir)


def test_pointer_cannot_escape_the_store(published):
    (published.store_dir / "CURRENT").write_text("../../etc\n")
    with pytest.raises(Exception, match="invalid release id"):
        load_release(published.store_dir)


def _cells(parent_devices: int, children_devices: list[int]):
    import datetime as dt

    import h3
    import pandas as pd

    parent = h3.latlng_to_cell(35.5, 12.6, 5)
    children = sorted(h3.cell_to_children(parent, 6))[: len(children_devices)]
    rows = [(parent, 5, parent_devices)] + [(c, 6, d) for c, d in zip(children, children_devices, strict=True)]
    return pd.DataFrame(
        [("r", "s", cell, res, dt.date(2026, 1, 1), devices, 0.0, 0.0, 0.1) for cell, res, devices in rows],
        columns=["route_id", "segment_id", "cell", "res", "date", "devices", "excess", "zscore", "share"],
    )


@pytest.mark.parametrize(
    ("parent", "children", "exposed"),
    [
        (40, [16, 16], 8),  # 40 - 32: the suppressed children held 8 devices (or more): refused
        (17, [16], 1),  # exactly one device left over: refused
        (40, [20, 20], None),  # nothing left over
        (40, [20, 25], None),  # less than nothing (a device in both children): reveals nothing
        (48, [16, 16], None),  # 16 left over: above the threshold, no suppressed count below it is revealed
        (16, [], None),  # no published child
    ],
)
def test_a_cell_table_that_can_be_differenced_is_never_served(published, parent, children, exposed):
    """Defence in depth behind the jobs' complementary suppression: serving refuses what subtraction would expose."""
    from serving.store import check_cells, differencing_remainders

    cells = _cells(parent, children)
    found = differencing_remainders(cells, 15)
    if exposed is None:
        assert found.empty
        check_cells(cells, 15, published.store_dir / "cells.parquet")
    else:
        assert list(found["remainder"]) == [exposed] and list(found["child_res"]) == [6]
        with pytest.raises(UnsuppressedRelease, match=f"leave 1..15 devices.*: {exposed}\\); refusing"):
            check_cells(cells, 15, published.store_dir / "cells.parquet")
