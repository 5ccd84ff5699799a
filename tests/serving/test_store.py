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
    [None, {"suppressed": False, "min_devices": 15}, {"suppressed": True, "min_devices": 9}, {"suppressed": True}],
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
