"""Country of a place from the packaged Natural Earth outlines: on land, on an island, and at sea."""

from __future__ import annotations

from geo.countries import country_codes


def test_places_on_land_islands_and_at_sea_get_their_country():
    points = [
        (32.5324, 15.5518),  # Khartoum
        (-13.2033, 27.1536),  # Laâyoune: Western Sahara, a territory of its own in Natural Earth
        (12.6081, 35.5022),  # Lampedusa: a small island
        (1.3126, 51.126),  # Dover
        (1.50, 51.05),  # mid-Channel, nearer England than France
        (23.6300, 52.0800),  # Terespol, on the Polish bank of the Bug
    ]
    assert country_codes(points) == ["SDN", "SAH", "ITA", "GBR", "GBR", "POL"]


def test_no_points_no_codes():
    assert country_codes([]) == []
