"""H3 and geometry for routecast: the route catalogue, corridors as H3 cells, cell boundaries as GeoJSON.

- ``geo.catalogue``: the routes (``geo/routes/*.geojson``) as validated, frozen dataclasses;
- ``geo.cells``: corridor polygons, corridor cells, the cell → segment table, cell polygons as GeoJSON.
- ``geo.networks``: a phone's home network (MCC) → its coarse group seen from a cell's country (``geo/data``).

Importing this package does no work; the catalogue is read when a loader is called.
"""
