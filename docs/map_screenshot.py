"""Screenshot of the map page (docs/map.png in the README): headless Chromium, driven by Playwright, against a
running API.

    routecast serve &                                     # over the demo's release
    python docs/map_screenshot.py --token "$(routecast token create --role planner --subject docs --ttl 1h)"

Options: --route (selected route), --days-ahead (the slider's day: as_of + N; 0 shows the observed excess), --out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_OUT = Path(__file__).with_name("map.png")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]


def main(
    token: Annotated[str, typer.Option(envvar="ROUTECAST_TOKEN", help="A planner (or admin) token.")],
    url: Annotated[str, typer.Option(help="Where the API is served.")] = "http://127.0.0.1:8000",
    route: Annotated[str, typer.Option(help="The route to select.")] = "central_mediterranean",
    days_ahead: Annotated[int, typer.Option(help="Day on the map: as_of plus this many days (0: observed).")] = 3,
    out: Annotated[Path, typer.Option(help="PNG to write.")] = DEFAULT_OUT,
    chromium: Annotated[str, typer.Option(envvar="ROUTECAST_CHROMIUM", help="The browser.")] = "/usr/bin/chromium",
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1150}, device_scale_factor=1)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{url.rstrip('/')}/map")
        page.fill("#token", token)
        page.click("#login button")
        page.wait_for_selector("body[data-state=ready]", timeout=60_000)
        page.click(f"#routes button[data-route={route}]")
        page.wait_for_function(
            f"() => Chart.getChart(document.getElementById('chart'))?.canvas.dataset.route === '{route}'"
        )
        page.wait_for_selector(f"#arrivals[data-route={route}]")
        if days_ahead:
            index = page.evaluate(
                "(n) => { const s = document.getElementById('day');"
                " return Math.min(Number(s.max), Number(s.dataset.asOfIndex) + n); }",
                days_ahead,
            )
            page.fill("#day", str(index))
            page.wait_for_function(
                "() => document.getElementById('map').dataset.cellsDay"
                " === document.getElementById('day-label').textContent.slice(0, 10)",
                timeout=30_000,
            )
        page.wait_for_timeout(300)  # let the last tiles of SVG paint
        page.screenshot(path=str(out))
        browser.close()
    if errors:
        raise SystemExit(f"the page logged errors: {errors}")
    typer.echo(f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)
