"""The migration simulator: synthetic phone pings along the routes, and the ground truth behind them.

A Spark job, so that it scales from tests to hundreds of millions of pings. What it models (parameters in
``simulator/simulator.toml``, one file):

- **departures** per route and day, drawn on the driver: a base rate x scale x yearly season x trend x a slow
  random wave (AR(1) in logs), Poisson. Journeys start ``warmup_days`` before the first simulated day, so the
  routes are already full when the output begins.
- **journeys**, computed per agent on the executors (vectorised numpy in ``mapInPandas``): a path through the
  route's segments (forks weighted by ``branch_weight``), and per segment a wait at its start (dwell) and a
  trip along it at the speed of its travel mode. Boats leave in the evening of a good-weather day.
- **closures**: an agent who would pass a closed crossing point waits until it reopens or, with probability
  ``divert_share``, starts a new journey on ``to_route`` ``lag_days`` later.
- **phones**: a migrant carries 0, 1 or 2 phones, each its own device; a phone starts on the home network and may
  move to a local SIM some days into a country it waits in; at sea there is no signal beyond a coastal range,
  in the desert little. A much larger resident population lives around every place, on its country's network.
  So that a foreign network alone does not say "migrant", foreign workers (in Libya and other transit
  countries), tourists at seasonal coastal places and long-haul drivers on the desert roads carry foreign
  networks too. Device ids rotate daily; GPS noise with ``accuracy_m``; a share of pings is lost.

Every random draw is a hash of (seed, stream, ids), never a generator's state, so the output does not depend
on partitioning: the same config and seed give the same rows. Times inside the job are float days since the
first simulated day (``start``), so day ``d`` is ``[d, d + 1)`` and its date is ``start + d``.

The modules, from the bottom up:

- ``config``: the parameter file as frozen pydantic models, ``load_config`` and ``SimulatorConfigError``;
- ``draws``: the seeded hash random streams, in numpy (executors) and as Spark columns;
- ``world``: the catalogue's geometry as the simulator sees it: paths through a route, places with residents;
- ``departures``: journeys started per route and day (season, trend, wave), and the sailing weather;
- ``journeys``: the agent logic, from (agent, route, departure time) to legs, closures, phones and SIMs included;
- ``model``: the driver-side model of one run that the Spark stages share, checked against the catalogue;
- ``pings``: the pings of the migrants' phones, of the residents, foreign workers and tourists, and of drivers;
- ``truth``: the ground-truth tables (people per segment, arrivals and departures at crossing points, journeys,
  people with phones and phones seen per segment), and ``truth_correlation`` scoring the density against them;
- ``run``: ``simulate``, the entry point that writes pings and truth, and its ``SimulationReport``.
"""
