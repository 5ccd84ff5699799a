"""What every layer of routecast agrees on, at the bottom of the layering: it imports nothing of ours.

- ``contracts.schemas``: the schema of every table, in Arrow types;
- ``contracts.tables``: the catalogue of tables (layer, name, schema, partitioning);
- ``contracts.series``: the series-id format of the gold table and of everything published;
- ``contracts.privacy``: the privacy threshold's floor;
- ``contracts.published``: the published forecast's value columns.
"""
