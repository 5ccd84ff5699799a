"""Forecasting for routecast, one series at a time in plain pandas (Spark fans the series out: jobs/stages/forecast.py).

Reading order:

- ``protocol``: the Forecaster protocol every model follows, and the period grids (D, W, M);
- ``models/``: the model families (``baselines``, ``statsforecast``, ``prophet``; ``base`` for what they share);
- ``metrics``, ``backtest``: scores, rolling-origin backtests and the conformal calibration of intervals;
- ``selection``: per series, backtest the candidates, refit the best and forecast (the published forecast table);
- ``vocabulary``: a forecast's values as a model predicts them (mean, lo-80, ...) and as published (yhat, lo80, ...);
- ``hierarchy``: reconciliation, so that segments add up to their route and routes to ``all``;
- ``champion``: the rule for when a new run's forecasts replace the ones serving uses;
- ``tracking``: MLflow runs, the registered model and its champion alias; ``plots``: the run's figures;
- ``evaluation``: the whole procedure rolled over past origins, for experiments;
- ``people``: the measurement model from the density's home-network groups to people present, fitted on coarse
  official arrivals (monthly per route, daily where published);
- ``totals``: totals of the next k periods with intervals of the total itself;
- ``scenario/``: what-if scenarios (closures, capacity cuts, surges) run as a flow model of the route network on
  Monte Carlo draws of the published people forecasts.
"""
