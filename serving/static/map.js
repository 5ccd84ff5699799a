/* routecast map page.
 *
 * It holds no data of its own: after a token is given it reads /v1/me, /v1/routes, each route's GeoJSON, its
 * forecast, the hexes of the chosen day, arrivals, alerts and the what-if scenarios kept, with that token. What the token may not see is never
 * asked for (a route outside its scope is not in /v1/routes; an analyst's token is not used for the planner
 * endpoints). Text from the API is put on the page as text, never as HTML.
 */
"use strict";

(() => {
  const TOKEN_KEY = "routecast.token";
  const ARRIVAL_DAYS = 7;
  const HISTORY = { people: 56, density: 56 }; // observed periods on the chart; other sources (monthly, weekly counts): 36
  // What the figures count, as the API says it; the chart and the arrivals table show it beside the numbers.
  const UNIT_NOTE = {
    people: "people (the measurement model's estimate)",
    devices: "devices (phones, a diagnostic: not people)",
  };
  const PALETTE = ["#1f6fb4", "#d4691e", "#2f9a4c", "#8f4bb8", "#b8324f", "#3e8f8f", "#7f7f2a", "#5a5a5a"];
  const EXCESS_STOPS = ["#2166ac", "#92c5de", "#f7f7f7", "#f4a582", "#b2182b"];
  const FORECAST_STOPS = ["#fed976", "#fd8d3c", "#e31a1c", "#99000d", "#4a0010"];
  // Mean H3 hexagon edge length in km by resolution: cells are drawn at the finest published resolution whose
  // hexagons are still a few pixels wide at the map's zoom.
  const H3_EDGE_KM = [1107.7, 418.7, 158.2, 59.8, 22.6, 8.5, 3.2, 1.2, 0.46, 0.17, 0.066, 0.025];
  const MIN_CELL_PX = 4;

  const $ = (id) => document.getElementById(id);
  const state = {
    token: null,
    me: null,
    routes: [], // RouteOut of /v1/routes, in catalogue order
    colours: {},
    routeLayers: {}, // route id -> L.GeoJSON
    days: [], // ISO dates the slider covers
    resolutions: [], // H3 resolutions the release publishes cells at
    cellRes: null, // the resolution drawn now
    asOf: null,
    selected: null,
    chart: null,
    pointLatLng: new Map(), // "route|point" -> the crossing point's L.LatLng, from the route GeoJSON
    pointName: new Map(), // "route|point" -> its name
    scenarios: [], // the list of GET /v1/scenarios
    scenario: null, // the scenario shown (GET /v1/scenarios/{id}), or null
    scenarioChart: null,
    generation: 0, // bumped on every new token: late answers of an old session are dropped
    cellCache: new Map(), // "route|day|res" -> promise of features
    cellsBusy: false,
    cellsAgain: false,
  };

  // ------------------------------------------------------------------------------------------------ the map

  const map = L.map("map", { minZoom: 2, maxZoom: 11, zoomSnap: 0.25 }).setView([40, 8], 4);
  map.attributionControl.setPrefix(false);
  map.attributionControl.addAttribution("Outlines: Natural Earth (world-atlas) · cells: H3");
  // Cells lie along the routes: they are drawn over the route lines, under the crossing points.
  for (const [pane, z] of [
    ["countries", 200],
    ["routes", 420],
    ["cells", 430],
    ["points", 450],
    ["scenario", 460],
  ]) {
    map.createPane(pane).style.zIndex = String(z);
  }
  const cellLayer = L.layerGroup([], { pane: "cells" }).addTo(map);
  const routeGroup = L.featureGroup().addTo(map);
  const scenarioLayer = L.layerGroup([], { pane: "scenario" }).addTo(map);

  const outlines = fetch("map/static/vendor/countries-50m.json")
    .then((r) => r.json())
    .then((topo) => {
      const countries = topojson.feature(topo, topo.objects.countries);
      L.geoJSON(countries, {
        pane: "countries",
        interactive: false,
        style: { color: "#8e979f", weight: 0.6, fillColor: "#efede6", fillOpacity: 1 },
      }).addTo(map);
      $("map").dataset.countries = String(countries.features.length);
    });

  // ------------------------------------------------------------------------------------------------ the API

  class ApiError extends Error {
    constructor(status, detail, retryAfter = null) {
      super(`${status}: ${detail}`);
      this.status = status;
      this.detail = detail;
      this.retryAfter = retryAfter; // seconds, on a 429
    }
  }

  async function api(path, params = {}) {
    const url = new URL(`v1/${path}`, document.baseURI);
    for (const [key, value] of Object.entries(params)) {
      for (const v of Array.isArray(value) ? value : [value]) {
        if (v !== null && v !== undefined) url.searchParams.append(key, String(v));
      }
    }
    const generation = state.generation;
    const response = await fetch(url, {
      headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" },
      cache: "no-store",
    });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (generation !== state.generation) throw new ApiError(0, "superseded");
    if (!response.ok) {
      const retry = Number(response.headers.get("Retry-After")) || null;
      throw new ApiError(response.status, (body && body.detail) || response.statusText, retry);
    }
    return body;
  }

  // ------------------------------------------------------------------------------------------------ helpers

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "style") node.style.cssText = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child instanceof Node ? child : String(child));
    return node;
  }

  function status(text, isError = false) {
    $("status").textContent = text;
    $("status").classList.toggle("error", isError);
  }

  const fmt = (x) => (x === null || x === undefined ? "–" : Math.round(x).toLocaleString("en-GB"));
  const isPlanner = () => state.me && state.me.role !== "analyst";

  function addDays(iso, n) {
    const d = new Date(`${iso}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() + n);
    return d.toISOString().slice(0, 10);
  }

  function mix(stops, t) {
    const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
    const i = Math.min(Math.floor(x), stops.length - 2);
    const f = x - i;
    const a = stops[i].match(/\w\w/g).map((h) => parseInt(h, 16));
    const b = stops[i + 1].match(/\w\w/g).map((h) => parseInt(h, 16));
    return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * f)).join(",")})`;
  }

  function tooltip(lines) {
    const box = el("div");
    lines.forEach((line, i) => box.append(i ? el("br") : "", line));
    return box;
  }

  // ------------------------------------------------------------------------------------------------ session

  function reset() {
    state.generation += 1;
    state.me = null;
    state.routes = [];
    state.colours = {};
    state.routeLayers = {};
    state.selected = null;
    state.days = [];
    state.cellRes = null;
    state.cellCache = new Map();
    state.cellsBusy = false;
    state.cellsAgain = false;
    routeGroup.clearLayers();
    cellLayer.clearLayers();
    if (state.chart) state.chart.destroy();
    state.chart = null;
    state.pointLatLng = new Map();
    state.pointName = new Map();
    state.scenarios = [];
    clearScenario();
    for (const id of ["cells-controls", "routes-section", "route-panel", "alerts-section", "scenarios-section"]) {
      $(id).hidden = true;
    }
    for (const id of ["routes", "alerts", "arrivals", "legend", "scenario"]) $(id).replaceChildren();
    for (const id of ["who", "release", "alert-count"]) $(id).textContent = "";
    $("map").dataset.routes = "0";
    $("map").dataset.cells = "0";
    delete $("map").dataset.cellsDay;
    $("logout").hidden = true;
    document.body.dataset.state = "login";
  }

  async function open(token) {
    reset();
    state.token = token;
    const generation = state.generation;
    document.body.dataset.state = "loading";
    status("Loading…");
    try {
      state.me = await api("me");
    } catch (e) {
      if (e.status === 0) return;
      sessionStorage.removeItem(TOKEN_KEY);
      document.body.dataset.state = "login";
      status(e.status === 401 ? `Token refused: ${e.detail}` : `The API did not answer: ${e.detail}`, true);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("logout").hidden = false;
    const me = state.me;
    const scope = me.routes ? me.routes.join(", ") : "all routes";
    $("who").textContent = `${me.subject} · ${me.role} · ${scope}`;
    try {
      const catalogue = await api("routes");
      state.routes = catalogue.routes;
      state.asOf = catalogue.as_of;
      state.resolutions = catalogue.cell_resolutions;
      $("release").textContent = catalogue.release_id
        ? `release ${catalogue.release_id} · data to ${catalogue.as_of}`
        : "no release served yet";
      state.routes.forEach((r, i) => (state.colours[r.id] = PALETTE[i % PALETTE.length]));
      await Promise.all([outlines, ...state.routes.map(drawRoute)]);
      if (generation !== state.generation) return;
      $("map").dataset.routes = String(state.routes.length);
      listRoutes();
      if (routeGroup.getLayers().length) map.fitBounds(routeGroup.getBounds(), { padding: [30, 30] });
      const tasks = [];
      if (isPlanner() && catalogue.release_id) {
        setUpDays();
        tasks.push(loadAlerts(), loadScenarios());
      }
      // The first route with a forecast is selected, without zooming to it: the map opens on every route.
      const first = state.routes.find((r) => r.sources.length);
      if (first) tasks.push(select(first.id, false));
      await Promise.all(tasks);
      if (generation !== state.generation) return;
      status(
        isPlanner()
          ? "Click a route (on the map or in the list) for its forecast and expected arrivals."
          : "Click a route for its forecast. Cells, arrivals and alerts need a planner token.",
      );
      document.body.dataset.state = "ready";
    } catch (e) {
      if (e.status === 0) return;
      status(`Could not load: ${e.detail || e.message}`, true);
      document.body.dataset.state = "error";
    }
  }

  // ------------------------------------------------------------------------------------------------ routes

  async function drawRoute(route) {
    const geojson = await api(`routes/${encodeURIComponent(route.id)}`);
    const colour = state.colours[route.id];
    const layer = L.geoJSON(geojson, {
      pane: "routes",
      // Points get their style from pointToLayer: Leaflet applies `style` to them too, and would replace their class.
      style: (f) =>
        f.geometry.type === "Point"
          ? {}
          : { color: colour, weight: 3, opacity: 0.8, className: `route-line route-${route.id}` },
      pointToLayer: (feature, latlng) =>
        L.circleMarker(latlng, {
          pane: "points",
          radius: 5,
          color: "#222",
          weight: 1,
          fillColor: colour,
          fillOpacity: 1,
          className: `crossing-point route-${route.id}`,
        }),
      onEachFeature: (feature, l) => {
        const p = feature.properties;
        if (p.kind === "crossing_point") {
          state.pointLatLng.set(`${route.id}|${p.id}`, l.getLatLng());
          state.pointName.set(`${route.id}|${p.id}`, p.name);
        }
        const what = p.kind === "segment" ? `${p.name} (${p.mode})` : `${p.name} · ${p.role}`;
        l.bindTooltip(() => tooltip([route.name, what]), { sticky: p.kind === "segment" });
        l.on("click", () => select(route.id));
      },
    });
    state.routeLayers[route.id] = layer;
    routeGroup.addLayer(layer);
  }

  function listRoutes() {
    const list = $("routes");
    for (const route of state.routes) {
      const button = el(
        "button",
        { type: "button", "data-route": route.id, "aria-pressed": "false", title: route.name },
        el("span", { class: "swatch", style: `background:${state.colours[route.id]}` }),
        route.name,
      );
      if (!route.sources.length) button.append(el("span", { class: "muted" }, " · no forecast"));
      button.addEventListener("click", () => select(route.id));
      list.append(el("li", {}, button));
    }
    $("routes-section").hidden = false;
  }

  async function select(routeId, zoom = true) {
    const route = state.routes.find((r) => r.id === routeId);
    if (!route) return;
    state.selected = routeId;
    for (const b of $("routes").querySelectorAll("button")) {
      b.setAttribute("aria-pressed", String(b.dataset.route === routeId));
    }
    for (const [id, layer] of Object.entries(state.routeLayers)) {
      layer.setStyle((f) => (f.geometry.type === "Point" ? {} : { weight: id === routeId ? 5 : 3 }));
    }
    const layer = state.routeLayers[routeId];
    if (zoom && layer && layer.getLayers().length) map.fitBounds(layer.getBounds(), { padding: [30, 30], animate: false });
    $("route-panel").hidden = false;
    $("route-name").textContent = route.name;
    const source = $("source");
    source.replaceChildren(...route.sources.map((s) => el("option", { value: s }, s)));
    // People where the release estimates them; the device series stay in the list as diagnostics.
    source.value = route.sources.includes("people") ? "people" : (route.sources[0] ?? "");
    source.onchange = () => drawChart(route, source.value);
    await Promise.all([drawChart(route, source.value), loadArrivals(route)]);
  }

  // ------------------------------------------------------------------------------------------------ chart

  // The options both charts share: the unit on the y axis, dates cut from dateFrom on the x axis, the "… low"
  // edges of the bands left out of the legend, and days without a value out of the tooltip.
  function chartOptions(unit, dateFrom) {
    return {
      animation: false,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: {
        legend: { labels: { boxWidth: 12, filter: (item) => !item.text.endsWith("low") } },
        tooltip: { filter: (item) => item.raw !== null },
      },
      scales: {
        x: {
          ticks: {
            maxTicksLimit: 7,
            maxRotation: 0,
            callback(value) {
              return this.getLabelForValue(value).slice(dateFrom);
            },
          },
        },
        y: { beginAtZero: true, title: { display: true, text: unit } },
      },
    };
  }

  async function drawChart(route, source) {
    const canvas = $("chart");
    delete canvas.dataset.route;
    if (state.chart) state.chart.destroy();
    state.chart = null;
    if (!source) {
      $("chart-note").textContent = "No forecast for this route in the served release.";
      return;
    }
    const answer = await api(`routes/${encodeURIComponent(route.id)}/forecast`, {
      source,
      history: HISTORY[source] ?? 36,
    });
    if (state.selected !== route.id) return;
    const series = answer.series[0];
    if (!series) {
      $("chart-note").textContent = `No ${source} forecast for this route.`;
      return;
    }
    const labels = [...series.history.map((p) => p.ds), ...series.forecast.map((p) => p.ds)];
    const pad = (values, before) => [...Array(before).fill(null), ...values];
    const nh = series.history.length;
    const lastObserved = series.history.length ? [series.history[nh - 1].y] : [];
    // The forecast line starts at the last observation so that the two join.
    const joined = (key) => pad([...lastObserved, ...series.forecast.map((p) => p[key])], Math.max(nh - 1, 0));
    const band = (key, colour, label, fill) => ({
      label,
      data: joined(key),
      borderWidth: 0,
      pointRadius: 0,
      backgroundColor: colour,
      fill,
    });
    state.chart = new Chart(canvas, {
      type: "line",
      data: {
        labels,
        datasets: [
          band("hi95", "rgba(31,111,180,0.14)", "95 % interval", "+1"),
          band("lo95", "rgba(31,111,180,0.14)", "95 % low", false),
          band("hi80", "rgba(31,111,180,0.28)", "80 % interval", "+1"),
          band("lo80", "rgba(31,111,180,0.28)", "80 % low", false),
          {
            label: "observed",
            data: series.history.map((p) => p.y),
            borderColor: "#1d232b",
            borderWidth: 1.5,
            pointRadius: 0,
          },
          {
            label: "forecast",
            data: joined("yhat"),
            borderColor: "#1f6fb4",
            borderWidth: 2,
            borderDash: [5, 3],
            pointRadius: 0,
          },
        ],
      },
      options: chartOptions(answer.unit, 2), // "2025-03-01" → "25-03-01": monthly series span years
    });
    canvas.dataset.route = route.id;
    canvas.dataset.unit = answer.unit;
    canvas.dataset.points = String(series.history.length + series.forecast.length);
    $("chart-note").textContent =
      `${UNIT_NOTE[answer.unit] ?? answer.unit} · ` +
      `${series.model} · ${series.freq === "D" ? "daily" : series.freq === "W" ? "weekly" : "monthly"} · ` +
      `forecast from ${series.forecast[0].ds} · run ${series.run_id.slice(0, 8)} · model v${series.model_version}`;
  }

  // ------------------------------------------------------------------------------------------------ arrivals

  async function loadArrivals(route) {
    const table = $("arrivals");
    table.replaceChildren();
    $("arrival-days").textContent = String(ARRIVAL_DAYS);
    const note = $("arrivals-note");
    if (!isPlanner()) {
      note.textContent = "Needs a planner token.";
      return;
    }
    if (!route.crossing_points.length || !["people", "density"].some((s) => route.sources.includes(s))) {
      note.textContent = "No landing points with a forecast on this route.";
      return;
    }
    const answer = await api("arrivals", { route: route.id, days: ARRIVAL_DAYS });
    if (state.selected !== route.id) return;
    const points = answer.crossing_points;
    // The unit of every row, or, while some points have people series and others not, each row's own.
    const unit = answer.unit
      ? `Unit: ${UNIT_NOTE[answer.unit] ?? answer.unit}.`
      : "Units differ by landing point: each row says people (estimated) or devices (phones, not people).";
    note.textContent =
      `${unit} Expected per day (hover for the 80 % and 95 % intervals); the total with the 80 % interval of the ` +
      "total where the release has one, otherwise (marked Σ) the sum of the daily 80 % bounds, a conservative range " +
      "and not an interval of the total.";
    if (!points.length) return;
    const interval = (d) => `${fmt(d.lo80)}–${fmt(d.hi80)} (80 %), ${fmt(d.lo95)}–${fmt(d.hi95)} (95 %)`;
    const days = points[0].days.map((d) => d.ds);
    table.append(
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          el("th", {}, "landing"),
          ...days.map((d) => el("th", { title: d }, d.slice(5))),
          el("th", {}, "total"),
        ),
      ),
      el(
        "tbody",
        {},
        ...points.map((p) =>
          el(
            "tr",
            {},
            el(
              "td",
              { title: `${p.role} · segment ${p.segment_id} · ${p.basis}`, "data-unit": p.unit },
              p.name,
              el("br"),
              el("span", { class: "iv" }, p.unit),
            ),
            ...p.days.map((d) => el("td", { title: `${d.ds}: ${interval(d)}` }, fmt(d.yhat))),
            el(
              "td",
              {
                title:
                  interval(p.total) +
                  (p.total.interval === "total"
                    ? ": the interval of the total"
                    : ": sums of the daily bounds, not an interval of the total"),
                "data-interval": p.total.interval,
              },
              fmt(p.total.yhat),
              el("br"),
              el(
                "span",
                { class: "iv" },
                `${p.total.interval === "total" ? "" : "Σ "}${fmt(p.total.lo80)}–${fmt(p.total.hi80)}`,
              ),
            ),
          ),
        ),
      ),
    );
    table.dataset.route = route.id;
    table.dataset.unit = answer.unit ?? "mixed";
  }

  // ------------------------------------------------------------------------------------------------ alerts

  async function loadAlerts() {
    const answer = await api("alerts");
    const list = $("alerts");
    const shown = answer.alerts.slice(0, 30);
    $("alert-count").textContent =
      answer.alerts.length > shown.length
        ? `(${shown.length} of ${answer.alerts.length})`
        : `(${answer.alerts.length})`;
    for (const alert of shown) {
      const item = el("li", { "data-route": alert.route_id }, `${alert.ds} · ${alert.message}`);
      item.addEventListener("click", () => select(alert.route_id));
      list.append(item);
    }
    if (!answer.alerts.length) list.append(el("li", { class: "muted" }, "none in the served release"));
    $("alerts-section").hidden = false;
  }

  // ------------------------------------------------------------------------------------------------ scenarios

  // The what-if scenarios kept that the token may see (planner tokens only): pick one to see, per series, its
  // baseline and the scenario per day, and at the crossing points the difference it makes over its window.
  async function loadScenarios() {
    let answer;
    let failed = null;
    try {
      answer = await api("scenarios");
    } catch (e) {
      if (e.status === 0) throw e;
      failed = e.detail; // the rest of the page stays usable
      answer = { scenarios: [] };
    }
    state.scenarios = answer.scenarios;
    const select = $("scenario");
    const placeholder = failed
      ? `could not be listed: ${failed}`
      : answer.scenarios.length
        ? "choose a scenario…"
        : "none kept that this token may see";
    select.replaceChildren(
      el("option", { value: "" }, placeholder),
      ...answer.scenarios.map((s) =>
        el(
          "option",
          { value: s.scenario_id },
          `${s.name || "(no name)"} · ${s.created_at.slice(0, 16).replace("T", " ")} · ${s.scenario_id.slice(0, 8)}`,
        ),
      ),
    );
    select.disabled = !answer.scenarios.length;
    select.onchange = () =>
      showScenario(select.value).catch((e) => {
        if (e.status !== 0) status(`Scenario: ${e.detail || e.message}`, true);
      });
    $("scenarios-section").dataset.scenarios = String(answer.scenarios.length);
    $("scenarios-section").hidden = false;
  }

  function clearScenario() {
    state.scenario = null;
    scenarioLayer.clearLayers();
    if (state.scenarioChart) state.scenarioChart.destroy();
    state.scenarioChart = null;
    const canvas = $("scenario-chart");
    for (const key of ["scenario", "series", "rows", "unit"]) delete canvas.dataset[key];
    $("scenario-row").replaceChildren();
    $("scenario-note").textContent = "";
    $("scenario-detail").hidden = true;
    $("map").dataset.scenarioMarkers = "0";
  }

  const pointName = (routeId, pointId) => state.pointName.get(`${routeId}|${pointId}`) ?? pointId;
  const routeName = (routeId) => state.routes.find((r) => r.id === routeId)?.name ?? routeId;
  const SERIES_TEXT = {
    point: (r) => `people crossing at ${pointName(r.route_id, r.point_id)}`,
    route: (r) => `people present on ${routeName(r.route_id)}`,
    waiting: (r) => `people waiting at ${pointName(r.route_id, r.point_id)}`,
    diverted: (r) => `people diverted from ${pointName(r.route_id, r.point_id)}`,
  };
  const seriesKey = (r) => `${r.kind}|${r.route_id}|${r.point_id ?? ""}`;

  async function showScenario(scenarioId) {
    clearScenario();
    if (!scenarioId) return;
    const answer = await api(`scenarios/${encodeURIComponent(scenarioId)}`);
    if ($("scenario").value !== scenarioId) return; // another scenario was picked meanwhile
    state.scenario = answer;
    // Its series, in the order of its summary (points, routes, waiting, diverted), each once.
    const rows = new Map();
    for (const r of answer.summary) if (!rows.has(seriesKey(r))) rows.set(seriesKey(r), r);
    const select = $("scenario-row");
    select.replaceChildren(
      ...[...rows.entries()].map(([key, r]) => el("option", { value: key }, SERIES_TEXT[r.kind](r))),
    );
    select.onchange = () => drawScenarioChart(select.value);
    $("scenario-detail").hidden = false;
    // The series first shown: a crossing point the scenario acts on if there is one.
    const waiting = answer.summary.find((r) => r.kind === "waiting");
    const first = waiting ? seriesKey({ ...waiting, kind: "point" }) : select.options[0]?.value;
    if (first && rows.has(first)) select.value = first;
    drawScenarioChart(select.value);
    drawScenarioMarkers(answer);
  }

  function drawScenarioChart(key) {
    const scenario = state.scenario;
    const canvas = $("scenario-chart");
    if (state.scenarioChart) state.scenarioChart.destroy();
    state.scenarioChart = null;
    if (!scenario || !key) return;
    const days = scenario.daily.filter((d) => seriesKey(d) === key);
    const line = (label, data, colour, dash) => ({
      label,
      data,
      borderColor: colour,
      borderWidth: 2,
      borderDash: dash,
      pointRadius: 0,
      fill: false,
    });
    const band = (label, data, colour, fill) => ({
      label,
      data,
      borderWidth: 0,
      pointRadius: 0,
      backgroundColor: colour,
      fill,
    });
    const of = (name) => days.map((d) => d[name]);
    state.scenarioChart = new Chart(canvas, {
      type: "line",
      data: {
        labels: days.map((d) => d.ds),
        datasets: [
          band("baseline 80 %", of("baseline_hi80"), "rgba(31,111,180,0.22)", "+1"),
          band("baseline 80 % low", of("baseline_lo80"), "rgba(31,111,180,0.22)", false),
          band("scenario 80 %", of("scenario_hi80"), "rgba(212,105,30,0.25)", "+1"),
          band("scenario 80 % low", of("scenario_lo80"), "rgba(212,105,30,0.25)", false),
          line("baseline", of("baseline_yhat"), "#1f6fb4", [5, 3]),
          line("scenario", of("scenario_yhat"), "#d4691e", []),
        ],
      },
      options: chartOptions(scenario.unit, 5), // "2025-03-01" → "03-01": a scenario spans weeks
    });
    canvas.dataset.scenario = scenario.scenario_id;
    canvas.dataset.series = key;
    canvas.dataset.rows = String(days.length);
    canvas.dataset.unit = scenario.unit;
    const meta = scenario.meta;
    $("scenario-note").textContent =
      `Unit: ${scenario.unit} (crossing, waiting or diverted per day; present on a route that day). ` +
      `Lines: medians of ${meta.n_draws} draws; bands: 80 % intervals. ` +
      `The planner's scenario "${scenario.spec.name || scenario.scenario_id.slice(0, 8)}" on release ` +
      `${meta.release_id} (asked by ${meta.subject}, ${meta.created_at.slice(0, 10)}): what would follow if its ` +
      "assumptions held, not a forecast of what will happen.";
  }

  // A marker at each crossing point the scenario shows: its area by the difference over the window, its colour by
  // the sign (red: more people crossing than the baseline, blue: fewer).
  function drawScenarioMarkers(scenario) {
    scenarioLayer.clearLayers();
    const rows = scenario.summary.filter(
      (r) => r.kind === "point" && r.measure === "total" && state.pointLatLng.has(`${r.route_id}|${r.point_id}`),
    );
    const extent = Math.max(1, ...rows.map((r) => Math.abs(r.difference_yhat)));
    for (const r of rows) {
      const t = r.difference_yhat / extent;
      const marker = L.circleMarker(state.pointLatLng.get(`${r.route_id}|${r.point_id}`), {
        pane: "scenario",
        radius: 6 + 14 * Math.sqrt(Math.abs(t)),
        color: "#222",
        weight: 1,
        fillColor: mix(EXCESS_STOPS, (t + 1) / 2),
        fillOpacity: 0.8,
        className: `scenario-point route-${r.route_id} point-${r.point_id}`,
      });
      const text =
        `baseline ${fmt(r.baseline_yhat)}, scenario ${fmt(r.scenario_yhat)}, ` +
        `difference ${fmt(r.difference_yhat)} [${fmt(r.difference_lo80)}, ${fmt(r.difference_hi80)}] people`;
      marker.bindTooltip(() =>
        tooltip([`${pointName(r.route_id, r.point_id)} · people crossing, ${r.start} to ${r.end}`, text]),
      );
      marker.on("click", () => {
        $("scenario-row").value = seriesKey(r);
        drawScenarioChart(seriesKey(r));
      });
      scenarioLayer.addLayer(marker);
    }
    $("map").dataset.scenarioMarkers = String(rows.length);
  }

  // ------------------------------------------------------------------------------------------------ cells

  function setUpDays() {
    const spans = state.routes.map((r) => r.cell_days).filter(Boolean);
    if (!spans.length) return;
    const first = spans.map((s) => s.first).sort()[0];
    const last = spans
      .map((s) => s.last)
      .sort()
      .at(-1);
    const days = [];
    for (let d = first; d <= last; d = addDays(d, 1)) days.push(d);
    state.days = days;
    const slider = $("day");
    slider.max = String(days.length - 1);
    slider.value = String(Math.max(days.indexOf(state.asOf), 0));
    slider.dataset.asOfIndex = slider.value;
    $("cells-controls").hidden = false;
    labelDay();
    loadCells();
  }

  function resolutionForZoom() {
    const lat = (map.getCenter().lat * Math.PI) / 180;
    const metresPerPixel = (156543.03 * Math.cos(lat)) / 2 ** map.getZoom();
    const wide = state.resolutions.filter((r) => (H3_EDGE_KM[r] * 1000) / metresPerPixel >= MIN_CELL_PX);
    return wide.length ? Math.max(...wide) : Math.min(...state.resolutions);
  }

  function chosenDay() {
    return state.days[Number($("day").value)];
  }

  function labelDay() {
    const day = chosenDay();
    $("day-label").textContent = `${day} · ${day <= state.asOf ? "observed excess" : "forecast"}`;
  }

  // One day's cells of one route at one resolution, asked for once: a release never changes.
  function hexes(route, day, res) {
    const key = `${route.id}|${day}|${res}`;
    if (!state.cellCache.has(key)) {
      const answer = api(`routes/${encodeURIComponent(route.id)}/hexes`, { date: day, res }).then((a) => a.features);
      answer.catch(() => state.cellCache.delete(key));
      state.cellCache.set(key, answer);
    }
    return state.cellCache.get(key);
  }

  // Draws the chosen day's cells. Scrubbing the slider asks for one day at a time: a call made while another is
  // loading only marks that the latest day must be drawn when it ends (the token's rate limit is shared).
  async function loadCells() {
    if (state.cellsBusy) {
      state.cellsAgain = true;
      return;
    }
    state.cellsBusy = true;
    const generation = state.generation;
    try {
      await drawCells();
    } finally {
      if (generation === state.generation) {
        state.cellsBusy = false;
        if (state.cellsAgain) {
          state.cellsAgain = false;
          loadCells();
        }
      }
    }
  }

  async function drawCells() {
    const day = chosenDay();
    const res = resolutionForZoom();
    const routes = state.routes.filter((r) => r.cell_days && r.cell_days.first <= day && day <= r.cell_days.last);
    let answers;
    try {
      answers = await Promise.all(routes.map((r) => hexes(r, day, res)));
    } catch (e) {
      if (e.status === 429) {
        const wait = e.retryAfter || 1;
        status(`The token's rate limit is reached: cells for ${day} in ${wait} s.`, true);
        setTimeout(loadCells, wait * 1000);
      } else if (e.status !== 0) {
        status(`Cells for ${day}: ${e.detail}`, true);
      }
      return;
    }
    if (day !== chosenDay() || res !== resolutionForZoom()) {
      state.cellsAgain = true; // a later day (or zoom) was chosen meanwhile
      return;
    }
    state.cellRes = res;
    const observed = day <= state.asOf;
    const features = answers.flat();
    const value = (p) => (observed ? p.excess : p.forecast);
    const extent = Math.max(1, ...features.map((f) => Math.abs(value(f.properties) ?? 0)));
    // A square-root scale: a few busy cells would otherwise leave all others pale.
    const scaled = (x) => Math.sign(x) * Math.sqrt(Math.abs(x) / extent);
    const colour = (p) =>
      observed ? mix(EXCESS_STOPS, (scaled(p.excess ?? 0) + 1) / 2) : mix(FORECAST_STOPS, scaled(p.forecast ?? 0));
    cellLayer.clearLayers();
    cellLayer.addLayer(
      L.geoJSON(
        { type: "FeatureCollection", features },
        {
          pane: "cells",
          style: (f) => ({
            color: "#59626b",
            weight: 0.3,
            fillColor: colour(f.properties),
            fillOpacity: 0.85,
            className: "cell",
          }),
          onEachFeature: (f, l) => {
            const p = f.properties;
            const lines = observed
              ? [`${fmt(p.devices)} devices`, `excess ${fmt(p.excess)} (z ${p.zscore?.toFixed(1) ?? "–"})`]
              : [`forecast ${fmt(p.forecast)} devices`, `80 %: ${fmt(p.lo80)}–${fmt(p.hi80)}`];
            l.bindTooltip(() => tooltip([`${p.date} · ${p.segment_ids.join(", ")}`, ...lines]));
          },
        },
      ),
    );
    legend(observed, extent, res);
    $("map").dataset.cells = String(features.length);
    $("map").dataset.cellsDay = day;
  }

  function legend(observed, extent, res) {
    const stops = observed ? EXCESS_STOPS : FORECAST_STOPS;
    const bar = el("span", { class: "bar", style: `background:linear-gradient(to right,${stops.join(",")})` });
    $("legend").replaceChildren(
      el("span", {}, observed ? fmt(-extent) : "0"),
      bar,
      el("span", {}, fmt(extent)),
      el("span", { class: "muted" }, `${observed ? "excess" : "expected"} devices per cell, √ scale (H3 res ${res})`),
    );
  }

  // ------------------------------------------------------------------------------------------------ start

  let dayTimer = null;
  $("day").addEventListener("input", () => {
    if (!state.days.length) return;
    labelDay();
    clearTimeout(dayTimer);
    dayTimer = setTimeout(loadCells, 150);
  });
  map.on("zoomend", () => {
    if (state.days.length && resolutionForZoom() !== state.cellRes) loadCells();
  });
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    if (token) open(token);
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    reset();
    status("Token forgotten. Paste a token to see the routes it may see.");
  });
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) open(saved);
})();
