"""A run tracked by the user's own script (the SDK) in the dashboard: marked, its free-form config, steps live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import prunescope
from tests.browser.conftest import API_TOKEN, PageWatch, screenshot, wait_js, wait_points

pytestmark = pytest.mark.browser


def steps_drawn(page: Any) -> int:
    page.locator("#chart-steps").scroll_into_view_if_needed()
    return int(page.evaluate("() => document.getElementById('chart-steps')?.data?.[0]?.x?.length ?? -1"))


def test_a_tracked_run_is_marked_shows_its_config_and_charts_steps_live(
        page: Any, watch: PageWatch, token_base_url: str, tmp_path: Path) -> None:
    config = {"arch": "resnet20", "lr": 0.1, "optim": {"name": "sgd", "nesterov": True}}
    run = prunescope.init(name="own-script", config=config, tags=["sdk"], api=token_base_url, token=API_TOKEN,
                          dir=tmp_path, epochs=3)
    try:
        for step in range(10):
            run.log(step=step, loss=2.0 / (step + 1), grad_norm=1.0 + step / 10)
        run.log(epoch=1, train_loss=0.4, test_acc=0.81)
        page.goto(f"{token_base_url}/runs/{run.id}")
        page.locator("#run-kind", has_text="tracked").wait_for()
        assert page.get_by_role("link", name="Clone this run").count() == 0  # a script's config is not a form's
        assert page.locator(".facts div", has_text="host").count() == 1
        panel = page.locator("#config-panel")
        assert "as the script logged it" in panel.locator("summary").inner_text()
        assert panel.locator("[data-field='arch'] dd").inner_text() == "resnet20"
        assert panel.locator("[data-field='lr'] dd").inner_text() == "0.1"
        assert panel.locator("[data-field='optim.nesterov'] dd").inner_text() == "true"
        wait_points(page, "chart-loss", 1)
        page.locator("#chart-steps").scroll_into_view_if_needed()  # drawn once near the viewport
        wait_js(page, "() => document.getElementById('chart-steps')?.data?.length === 2")
        assert steps_drawn(page) == 10
        names = page.evaluate("() => document.getElementById('chart-steps').data.map(t => t.name)")
        assert names == ["loss", "grad_norm"]
        # Points logged inside the next epoch reach the open page before that epoch ends (the stream's events).
        for step in range(10, 15):
            run.log(step=step, loss=2.0 / (step + 1), grad_norm=2.0)
        wait_js(page, "() => document.getElementById('chart-steps')?.data?.[0]?.x?.length === 15")
        page.locator("#steps-caption", has_text="15 points · step 14").wait_for()
        run.log(epoch=2, train_loss=0.3, test_acc=0.85)
        wait_points(page, "chart-loss", 2)
        page.set_viewport_size({"width": 1440, "height": 900})
        screenshot(page, "tracked-run-1440")
        page.goto(f"{token_base_url}/?q=own-script")
        row = page.locator(f"tr[data-run-id='{run.id}']")
        row.locator(".kind-marker", has_text="tracked").wait_for()
        assert row.locator("td.c-method").inner_text() == "dense"  # no pruner watched; no stray "null" line
        page.goto(f"{token_base_url}/runs/{run.id}")
        page.locator("#chart-churn").scroll_into_view_if_needed()
        empty = wait_js(page, "() => document.getElementById('chart-churn')?.layout?.annotations?.[0]?.text")
        assert empty == "No per-layer statistics: this run records no pruned layers"
        page.goto(f"{token_base_url}/?q=own-script")
        row.wait_for()
        screenshot(page, "runs-with-tracked-1440", full_page=False)
        page.set_viewport_size({"width": 390, "height": 844})
        wait_js(page, "() => document.documentElement.scrollWidth <= 390")
        screenshot(page, "runs-with-tracked-390", full_page=False)
    finally:
        run.finish()
    assert watch.errors == []


def test_a_managed_run_has_no_tracked_marker_and_no_steps_chart(page: Any, token_base_url: str) -> None:
    import httpx

    with httpx.Client(base_url=token_base_url, headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        created = client.post("/api/runs", json={"name": "managed-plain", "dataset": {"name": "digits"}})
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
    page.goto(f"{token_base_url}/runs/{run_id}")
    page.get_by_role("heading", name="managed-plain").wait_for()
    assert page.locator("#run-kind").count() == 0
    assert page.locator("#steps-card").count() == 0
    page.goto(f"{token_base_url}/?q=managed-plain")
    page.locator(f"tr[data-run-id='{run_id}']").wait_for()
    assert page.locator(f"tr[data-run-id='{run_id}'] .kind-marker").count() == 0


def test_a_single_other_scalar_is_named_on_its_chart(page: Any, token_base_url: str, tmp_path: Path) -> None:
    # With one series Plotly drew no legend and the axis had no title: its name showed only on hover.
    run = prunescope.init(name="one-extra", api=token_base_url, token=API_TOKEN, dir=tmp_path, epochs=2)
    try:
        run.log(epoch=1, train_loss=0.5, grad_norm=1.5)
        run.log(epoch=2, train_loss=0.4, grad_norm=1.2)
    finally:
        run.finish()
    page.goto(f"{token_base_url}/runs/{run.id}")
    wait_points(page, "chart-extra", 2)
    layout = page.evaluate("() => { const l = document.getElementById('chart-extra').layout; "
                           "return [l.showlegend, l.yaxis.title.text]; }")
    assert layout == [True, "grad_norm"]
