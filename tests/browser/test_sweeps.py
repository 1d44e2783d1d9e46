"""Sweeps in the browser: a grid from the form, the sweeps list, and a sweep page with progress, a
parallel-coordinates plot, the best run marked, and cancel-all."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.browser.conftest import FakeWorker, screenshot, wait_js

pytestmark = pytest.mark.browser

BASE = {"name": "grid", "tags": ["sweep"], "dataset": {"name": "digits"}, "training": {"epochs": 3},
        "pruning": {"target_sparsity": 0.9, "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": 2}}}


def test_the_form_creates_a_grid_sweep(page: Any, worker: FakeWorker) -> None:
    page.goto("/runs/new?preset=gmp")
    page.get_by_label("Sweep: try several values").check()
    page.get_by_label("Name", exact=True).fill("form-grid")
    page.get_by_label("Epochs").fill("4")
    page.get_by_label("Schedule start epoch").fill("1")
    page.get_by_label("Schedule end epoch").fill("3")
    page.get_by_label("Target sparsity").fill("0.9, 0.95, 0.98")
    page.get_by_label("Recovery", exact=True).select_option(["none", "splice"])
    assert page.get_by_label("Splice margin").is_visible()  # applies to one of the chosen recoveries
    page.set_viewport_size({"width": 1440, "height": 900})
    page.get_by_label("Target sparsity").scroll_into_view_if_needed()
    screenshot(page, "form-sweep-1440", full_page=False)
    page.get_by_role("button", name="Start sweep (6 runs)").click()
    page.wait_for_url(re.compile(r"/sweeps/\d+$"))
    sweep = worker.client.get(f"/api/sweeps/{page.url.rsplit('/', 1)[1]}").json()
    assert sweep["name"] == "form-grid"
    assert sweep["grid"] == {"pruning.target_sparsity": [0.9, 0.95, 0.98], "pruning.recovery.kind": ["none", "splice"]}
    assert sweep["runs_total"] == 6
    config = worker.run(sweep["runs"][0]["id"])["config"]
    assert config["preset"] == "gmp" and config["training"]["epochs"] == 4
    page.get_by_role("heading", name="form-grid").wait_for()
    assert page.locator("#sweep-runs tbody tr").count() == 6


def test_a_sweep_without_a_list_is_refused_in_the_form(page: Any, worker: FakeWorker) -> None:
    before = worker.client.get("/api/sweeps").json()["total"]
    page.goto("/runs/new?sweep=1&preset=dns")
    page.get_by_role("button", name="Start sweep (1 runs)").click()
    page.locator("#form-errors", has_text="give at least one field several values").wait_for()
    assert worker.client.get("/api/sweeps").json()["total"] == before


def test_sweep_page_shows_progress_parcoords_the_best_run_and_cancels(page: Any, worker: FakeWorker) -> None:
    grid = {"training.lr": [0.05, 0.1, 0.2], "pruning.recovery.kind": ["none", "splice"]}
    body = {"name": "lr-grid", "base": BASE, "grid": grid}
    sweep = worker.client.post("/api/sweeps", json=body).json()
    runs = [r["id"] for r in sweep["runs"]]
    worker.complete(runs[0], 3, accuracy=0.91, sparsity=0.9)
    worker.complete(runs[3], 3, accuracy=0.95, sparsity=0.88)
    worker.start(runs[1])
    worker.epoch(runs[1], 1, 3)
    page.goto("/sweeps")
    row = page.locator(f"#sweeps-table tr[data-sweep-id='{sweep['id']}']")
    row.wait_for()
    assert "completed 2" in row.inner_text() and "running 1" in row.inner_text()
    row.get_by_role("link", name="lr-grid").click()
    page.wait_for_url(re.compile(rf"/sweeps/{sweep['id']}$"))
    best = page.locator(f"#sweep-runs tr[data-run-id='{runs[3]}']")
    best.locator(".best-mark").wait_for()
    assert page.locator("#sweep-runs .best-mark").count() == 1
    assert best.locator("td").nth(1).inner_text() == "0.1"  # training.lr of the fourth combination
    assert best.locator("td").nth(2).inner_text() == "splice"
    page.locator("#sweep-chart-caption", has_text=f"best run (#{runs[3]})").wait_for()
    # Parallel coordinates in SVG (Plotly's WebGL parcoords needs 'unsafe-eval', which the CSP refuses).
    plot = page.evaluate("(() => { const el = document.getElementById('chart-sweep');"
                         " return {meta: el.layout.meta, types: el.data.map((t) => t.type || 'scatter'),"
                         " widths: el.data.map((t) => t.line.width), names: el.data.map((t) => t.name),"
                         " axes: el.layout.annotations.filter((a) => a.name === 'dimension').map((a) => a.text),"
                         " box: el.getBoundingClientRect().toJSON(),"
                         " titles: [...el.querySelectorAll('.annotation-text')].filter((t) => t.getBBox().width > 0)"
                         "   .map((t) => ({text: t.textContent, ...t.getBoundingClientRect().toJSON()})),"
                         " lines: el.querySelectorAll('.scatterlayer .trace').length}; })()")
    assert plot["meta"]["dimensions"] == ["training.lr", "recovery.kind", "final sparsity", "final accuracy"]
    assert plot["axes"] == plot["meta"]["dimensions"]
    # Every dimension's title is drawn inside the chart: the first was hidden (it would have stuck out on the left).
    titles = {t["text"]: t for t in plot["titles"]}
    for label in plot["meta"]["dimensions"]:
        assert label in titles, f"{label} has no visible title"
        assert plot["box"]["left"] - 1 <= titles[label]["left"] and titles[label]["right"] <= plot["box"]["right"] + 1
    assert sorted(plot["meta"]["runs"]) == sorted([runs[0], runs[3]]) and plot["meta"]["best"] == runs[3]
    assert plot["types"] == ["scatter", "scatter"] and plot["lines"] == 2  # drawn, one line per completed run
    assert plot["names"][-1] == f"#{runs[3]}" and plot["widths"] == [1.5, 3]  # the best run bold, on top
    page.set_viewport_size({"width": 1440, "height": 900})
    screenshot(page, "sweep-1440")
    page.get_by_role("button", name="Cancel all runs (4)").click()  # the queued three and the running one
    page.get_by_role("dialog").get_by_role("button", name="Yes, cancel all").click()
    page.get_by_role("button", name="Cancel requested…").wait_for()  # the running run stops at its next report
    after = {r["id"]: r for r in worker.client.get(f"/api/sweeps/{sweep['id']}").json()["runs"]}
    assert after[runs[0]]["status"] == "completed"
    assert after[runs[1]]["cancel_requested"] is True
    assert after[runs[2]]["status"] == "cancelled"
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the sweep page scrolls sideways on a phone ({width} px)"
    screenshot(page, "sweep-390")


@pytest.mark.parametrize("typed", ["0.5; 0.8", "0.5 0.8"])
def test_a_list_with_the_wrong_separator_is_marked_on_its_field(page: Any, worker: FakeWorker, typed: str) -> None:
    # "0.5; 0.8" read as one value: the form said "give at least one field several values", naming no field.
    before = worker.client.get("/api/sweeps").json()["total"]
    page.goto("/runs/new?sweep=1&preset=gmp")
    page.get_by_label("Target sparsity").fill(typed)
    page.get_by_role("button", name=re.compile(r"Start sweep")).click()
    page.locator("#f-pruning-target-sparsity-error", has_text="not a list of numbers").wait_for()
    assert page.get_by_label("Target sparsity").get_attribute("aria-invalid") == "true"
    assert "several values" not in page.locator("#form-errors").inner_text()
    assert worker.client.get("/api/sweeps").json()["total"] == before


def test_a_sweep_over_granularities_carries_what_every_combination_needs(page: Any) -> None:
    # The form decided target vs N:M from the first chosen granularity: with n:m listed first, the unstructured
    # combinations got no target sparsity.
    def nm_first(route: Any) -> None:
        body = route.fetch().json()
        body["granularities"] = ["n:m", *[g for g in body["granularities"] if g != "n:m"]]
        route.fulfill(json=body)

    page.route("**/api/options", nm_first)
    page.goto("/runs/new?sweep=1&preset=gmp")
    page.get_by_label("Granularity").select_option(["n:m", "unstructured"])
    page.get_by_label("n (kept)").fill("2")
    page.get_by_label("m (group size)").fill("4")
    target = float(page.get_by_label("Target sparsity").input_value())
    body = json.loads(page.locator("#config-preview").text_content())
    assert body["grid"] == {"pruning.granularity": ["n:m", "unstructured"]}
    assert body["base"]["pruning"]["n_m"] == [2, 4]
    assert body["base"]["pruning"]["target_sparsity"] == target
    page.get_by_label("Granularity").select_option(["n:m"])
    body = json.loads(page.locator("#config-preview").text_content())
    assert body["base"]["pruning"]["target_sparsity"] is None and body["base"]["pruning"]["n_m"] == [2, 4]
    page.get_by_label("Granularity").select_option(["unstructured", "neuron"])
    body = json.loads(page.locator("#config-preview").text_content())
    assert body["base"]["pruning"]["target_sparsity"] == target and body["base"]["pruning"]["n_m"] is None


def test_a_sweep_cancelled_before_any_run_completed_says_none_did(page: Any, worker: FakeWorker) -> None:
    # After "Cancel all runs" the chart still said "Waiting for the first completed run", which never comes.
    body = {"name": "never-done", "base": {**BASE, "device": "cuda"}, "grid": {"training.lr": [0.05, 0.1]}}
    sweep = worker.client.post("/api/sweeps", json=body).json()
    page.goto(f"/sweeps/{sweep['id']}")
    waiting = "() => document.getElementById('chart-sweep')?.layout?.annotations?.[0]?.text"
    wait_js(page, waiting)
    assert page.evaluate(waiting) == "Waiting for the first completed run"
    page.get_by_role("button", name="Cancel all runs (2)").click()
    page.get_by_role("dialog").get_by_role("button", name="Yes, cancel all").click()
    page.locator("#sweep-runs .badge.cancelled").nth(1).wait_for()
    wait_js(page, f"() => ({waiting})() === 'No run of this sweep completed'")
    assert not page.locator("#cancel-sweep").is_visible()
    assert "completed yet" not in page.locator(".run-header .facts").inner_text()
