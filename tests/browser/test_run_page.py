"""The run page: configuration beside results, failure and cancel wording, chart controls and exports, masks, notes."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import FakeWorker, PageWatch, chart, screenshot, wait_js

pytestmark = pytest.mark.browser

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot-run.png"
TRACEBACK = ('Traceback (most recent call last):\n  File "worker/runner.py", line 12, in run\n    train()\n'
             "ValueError: layer pattern 'conv*' matches no prunable layer <b>of</b> lenet300_100")


def fact(page: Any, label: str) -> str:
    text: str = page.locator(".facts div", has=page.locator("dt", has_text=label)).first.locator("dd").inner_text()
    return text


def test_the_configuration_is_shown_beside_the_results(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("config-panel", epochs=6, training={"epochs": 6, "lr": 0.02, "batch_size": 32},
                           pruning={"target_sparsity": 0.8, "distribution": "erk",
                                    "recovery": {"kind": "gradient", "drop_fraction": 0.25},
                                    "schedule": {"kind": "constant"}})
    page.goto(f"/runs/{run_id}")
    panel = page.locator("#config-panel")
    panel.wait_for()
    value = lambda field: panel.locator(f"[data-field='{field}'] dd").inner_text()  # noqa: E731
    assert value("training.lr") == "0.02"
    assert value("training.batch_size") == "32"
    assert value("training.optimizer") != ""  # defaults are shown too: every field of the stored config
    assert value("pruning.target_sparsity") == "0.8"
    assert value("pruning.distribution") == "erk"
    assert value("pruning.recovery.drop_fraction") == "0.25"
    assert value("pruning.recovery.kind") == "gradient"
    assert value("pruning.schedule.kind") == "constant"
    assert panel.locator("h3", has_text="pruning.recovery").count() == 1


def test_a_failed_run_gives_one_line_and_the_traceback_behind_a_disclosure(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("fails-at-once", epochs=3)
    worker.start(run_id)
    worker.finish(run_id, status="failed", error=TRACEBACK)
    page.goto(f"/runs/{run_id}")
    reason = page.locator("#run-failure .failure-reason")
    reason.wait_for()
    assert reason.inner_text() == "ValueError: layer pattern 'conv*' matches no prunable layer <b>of</b> lenet300_100"
    detail = page.locator("#run-failure details pre")
    assert detail.is_hidden()
    page.locator("#run-failure summary").click()
    assert detail.is_visible() and detail.inner_text().startswith("Traceback (most recent call last):")
    assert page.locator("#run-failure b").count() == 0
    # Empty charts and the note under the header say what happened, not that charts "fill in live".
    page.locator("#no-epochs", has_text="failed").wait_for()  # written once the chart library has loaded
    note = page.locator("#no-epochs").inner_text()
    assert "failed" in note and "live" not in note
    annotation = chart(page, "chart-loss", "el.layout.annotations[0].text")
    assert "failed" in annotation
    assert chart(page, "chart-loss", "el.layout.xaxis.visible") is False
    # Every panel says so: the histogram and threshold said "Waiting for the first epoch", the mask "not yet".
    for panel in ("chart-threshold", "chart-histogram"):
        text = chart(page, panel, "el.layout.annotations?.[0]?.text")
        assert text == "The run failed before it recorded an epoch", (panel, text)
    page.locator("#mask-note", has_text="The run failed before it recorded an epoch").wait_for()


def test_empty_charts_of_a_queued_run_say_what_they_wait_for(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("queued-empty", epochs=3)
    page.goto(f"/runs/{run_id}")
    annotation = chart(page, "chart-sparsity", "el.layout.annotations?.[0]?.text")
    assert "Waiting for a worker" in annotation
    assert chart(page, "chart-sparsity", "el.layout.yaxis.visible") is False  # no −1…4 axes


def test_a_queued_run_no_online_worker_takes_says_so_and_how_to_start_one(page: Any, worker: FakeWorker) -> None:
    # device "cuda" with only a CPU worker online: the run waited with "Waiting for a worker" and no hint, forever.
    cpu_only = {"items": [{"name": "cpu-1", "hostname": "laptop", "queues": ["cpu"], "device": "cpu",
                           "device_name": "cpu", "gpu_memory_mb": None, "current_run_id": None,
                           "started_at": "2026-11-29T10:00:00Z", "last_heartbeat": "2026-11-29T10:00:00Z",
                           "heartbeat_age_seconds": 1.0}]}
    page.route("**/api/workers", lambda route: route.fulfill(json=cpu_only))
    gpu = worker.submit("wants-a-gpu", device="cuda")
    page.goto(f"/runs/{gpu}")
    note = page.locator("#queue-note")
    note.wait_for()
    assert note.inner_text() == ("No online worker takes the “gpu” queue this run waits in (device cuda; online "
                                 "workers take: cpu). It starts when one does: prunescope worker --queues gpu")
    screenshot(page, "run-queued-no-worker", full_page=False)
    cpu = worker.submit("a-cpu-run", device="cpu")
    page.goto(f"/runs/{cpu}")
    page.locator("#no-epochs").wait_for()
    assert page.locator("#queue-note").is_hidden()


def test_a_cancelled_runs_header_matches_its_last_epoch(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("cancelled-header", epochs=10)
    worker.start(run_id)
    records = [worker.epoch(run_id, e, 10) for e in (1, 2, 3)]
    assert all(r is not None for r in records)
    last = worker.client.get(f"/api/runs/{run_id}/epochs").json()["items"][-1]
    worker.client.post(f"/api/runs/{run_id}/cancel")
    # The worker measures its summary after the interrupted epoch: a different sparsity than epoch 3's.
    worker.finish(run_id, status="cancelled", summary={"final_sparsity": 0.59, "final_test_acc": 0.5,
                                                       "best_test_acc": 0.9})
    page.goto(f"/runs/{run_id}")
    page.locator(".run-title .badge", has_text="cancelled").wait_for()
    page.locator("#run-cancelled", has_text="after epoch 3 of 10").wait_for()
    assert fact(page, "sparsity") == f"{last['sparsity'] * 100:.1f}%"
    assert fact(page, "test acc.") == f"{last['test_acc'] * 100:.2f}%"


def test_charts_have_no_cloud_links_and_export_titled_pngs_on_white(page: Any, worker: FakeWorker) -> None:
    from PIL import Image

    run_id = worker.submit("Export Me", epochs=4)
    worker.complete(run_id, 4)
    page.goto(f"/runs/{run_id}")
    chart(page, "chart-loss", "el.data.length")
    page.locator("#chart-loss").hover()
    titles = page.evaluate("() => [...document.querySelectorAll('.modebar-btn')].map(b => b.dataset.title)")
    assert "Download as PNG" in titles
    assert not [t for t in titles if t and ("cloud" in t.lower() or "chart studio" in t.lower())]
    assert page.locator(".modebar a[href*='plot.ly'], .modebar-btn--logo").count() == 0
    links = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
    assert not [href for href in links if "plot.ly" in href or "chart-studio" in href]
    # Record what the export hands to Plotly, then download.
    page.evaluate("""() => { const original = Plotly.toImage; window.__exported = null;
        Plotly.toImage = (figure, options) => {
            window.__exported = figure.layout;
            return original(figure, options);
        }; }""")
    with page.expect_download() as download_info:
        page.locator("#chart-loss .modebar-btn[data-title='Download as PNG']").click()
    download = download_info.value
    assert download.suggested_filename == f"run-{run_id}-export-me-loss.png"
    exported = page.evaluate("window.__exported")
    assert exported["title"]["text"] == f"run-{run_id}-export-me: loss and accuracy"
    assert exported["paper_bgcolor"] == "#ffffff"
    image = Image.open(io.BytesIO(Path(download.path()).read_bytes())).convert("RGB")
    assert image.getpixel((2, 2)) == (255, 255, 255)


def test_metric_charts_have_log_scale_smoothing_and_whole_epoch_ticks(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("chart-controls", epochs=5)
    worker.complete(run_id, 5)
    page.goto(f"/runs/{run_id}")
    raw = chart(page, "chart-loss", "el.data[0].y")
    assert chart(page, "chart-loss", "[el.layout.xaxis.dtick, el.layout.xaxis.tickformat]") == [1, "d"]
    page.get_by_label("Log scale (loss)").check()
    wait_js(page, "() => document.getElementById('chart-loss').layout.yaxis.type === 'log'")
    page.locator("#loss-smoothing").fill("0.6")
    wait_js(page, "() => document.getElementById('chart-loss').data.length === 8")  # smoothed + faint raw
    smoothed = chart(page, "chart-loss", "el.data[0].y")
    assert smoothed[0] == pytest.approx(raw[0])  # debiased: the first point is not pulled towards 0
    assert smoothed[-1] != pytest.approx(raw[-1])
    # Zoomed in, ticks stay on whole epochs.
    page.evaluate("() => Plotly.relayout('chart-sparsity', {'xaxis.range': [1.2, 2.8]})")
    wait_js(page, "() => document.getElementById('chart-sparsity').layout.xaxis.dtick === 1")
    ticks = page.locator("#chart-sparsity .xtick text").all_text_contents()
    assert ticks and all(t.strip().isdigit() for t in ticks), ticks


def test_churn_has_a_log_scale_and_hides_the_initial_prune(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("churn-controls", epochs=5)
    worker.complete(run_id, 5)
    page.goto(f"/runs/{run_id}")
    first = chart(page, "chart-churn", "el.data[0].y[0]")
    assert first > 0
    page.get_by_label("Hide the initial prune").check()
    wait_js(page, "() => document.getElementById('chart-churn').data[0].y[0] === null")
    page.locator("#churn-log").check()
    wait_js(page, "() => document.getElementById('chart-churn').layout.yaxis.type === 'log'")
    regrown = chart(page, "chart-churn", "el.data[1].y.filter(v => v !== null)")
    assert regrown and all(v > 0 for v in regrown)  # regrown counts upwards on a log axis


def test_masks_at_full_resolution_changes_and_ages_from_initialisation(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("mask-views", epochs=4)
    worker.complete(run_id, 4, with_masks=True)
    page.goto(f"/runs/{run_id}")
    page.locator("#mask-caption").filter(has_text="epoch 4").wait_for()
    page.locator("#inspector").scroll_into_view_if_needed()
    wait_js(page, "() => document.getElementById('chart-mask')?.layout?.meta?.epoch === 4")
    # LeNet-300-100's first layer fits: one cell per weight, not ≤ 4096 uneven cells.
    assert chart(page, "chart-mask", "[el.data[0].z.length, el.data[0].z[0].length]") == [300, 784]
    assert "one cell each" in page.locator("#mask-caption").inner_text()
    page.get_by_label("Show").select_option("changes")
    page.locator("#mask-caption").filter(has_text="regrown (green)").wait_for()
    wait_js(page, "() => document.getElementById('chart-mask')?.layout?.meta?.view === 'changes'")
    changes = worker.client.get(f"/api/runs/{run_id}/masks/fc1.weight/changes", params={"epoch": 4}).json()
    caption = page.locator("#mask-caption").inner_text()
    assert f"{changes['pruned']:,} pruned (red)" in caption and f"{changes['regrown']:,} regrown (green)" in caption
    assert "against epoch 3" in caption
    # Epoch 1: "never flipped" and the layer table's pruned count add up to the layer's size.
    slider = page.get_by_label("Epoch", exact=True)
    slider.focus()
    page.keyboard.press("Home")
    page.locator("#ages-caption").filter(has_text="epoch 1 ").wait_for()
    grid = worker.client.get(f"/api/runs/{run_id}/masks/fc1.weight", params={"epoch": 1, "max_cells": 250_000}).json()
    kept = sum(sum(1 for v in row if v == 1.0) for row in grid["density"])
    ages = page.locator("#ages-caption").inner_text()
    assert f"{kept:,} of 235,200 weights never flipped since initialisation" in ages
    # The connectivity map can keep one colour scale while playing.
    page.locator("#conn-fixed").check()
    page.locator("#connectivity-caption").filter(has_text="(fixed)").wait_for()
    fixed_first = chart(page, "chart-connectivity", "el.layout.meta.zmax")
    slider.focus()
    page.keyboard.press("End")
    page.locator("#connectivity-caption").filter(has_text="epoch 4 ").wait_for()
    wait_js(page, "() => document.getElementById('chart-connectivity')?.layout?.meta?.epoch === 4")
    assert chart(page, "chart-connectivity", "el.layout.meta.zmax") == fixed_first
    assert page.locator("#threshold-caption").inner_text().startswith("fc1.weight · threshold")


def test_notes_render_as_sanitized_markdown(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("markdown-notes", epochs=2)
    worker.complete(run_id, 2)
    notes = ("## Result\nThe **best** run so far, with `lr 0.1`.\n\n- keeps *98 %*\n- see [paper](https://arxiv.org/abs/1608.04493)\n\n"
             "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">\n"
             "[click](javascript:window.__pwned=3) and [mail](mailto:a@b.c)")
    assert worker.client.patch(f"/api/runs/{run_id}", json={"notes": notes}).status_code == 200
    page.goto(f"/runs/{run_id}")
    box = page.locator("#run-notes")
    box.locator("strong").wait_for()
    assert box.locator("strong").inner_text() == "best"
    assert box.locator("code").inner_text() == "lr 0.1"
    assert box.locator("li").count() == 2 and box.locator("em").inner_text() == "98 %"
    assert box.locator("h4").inner_text() == "Result"
    link = box.locator("a", has_text="paper")
    assert link.get_attribute("href") == "https://arxiv.org/abs/1608.04493"
    assert link.get_attribute("rel") == "noopener noreferrer"
    assert box.locator("a", has_text="mail").get_attribute("href") == "mailto:a@b.c"
    assert box.locator("a[href^='javascript']").count() == 0
    assert box.locator("script, img").count() == 0
    text = box.inner_text()
    assert "<script>window.__pwned = 1</script>" in text and "[click](javascript:window.__pwned=3)" in text
    assert page.evaluate("window.__pwned") is None


def test_unknown_urls_get_the_dashboards_404_page(page: Any, watch: PageWatch, worker: FakeWorker) -> None:
    watch.expect_failed_request("/no/such/page")  # the 404 status is the point
    response = page.goto("/no/such/page")
    assert response is not None and response.status == 404
    page.get_by_role("heading", name="Page not found").wait_for()
    assert page.get_by_role("link", name="Back to runs").is_visible()
    api = worker.client.get("/api/no-such-endpoint", headers={"Accept": "text/html"})
    assert api.status_code == 404 and api.headers["content-type"].startswith("application/json")


def test_run_page_screenshots_wide_and_phone(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("lenet300-dns", epochs=12, tags=["dns", "mnist"], preset="dns")
    worker.complete(run_id, 12, accuracy=0.978, sparsity=0.95, with_masks=True, histograms=True)
    worker.client.patch(f"/api/runs/{run_id}", json={"notes": "DNS on **LeNet-300-100**: splices settle by epoch 8."})
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"/runs/{run_id}")
    page.locator("#mask-caption").filter(has_text="epoch 12").wait_for()
    wait_js(page, "() => document.getElementById('chart-loss')?.data?.length === 4")
    wide = screenshot(page, "run-page-1440")
    # README's picture is of the results: the configuration panel folded so the charts fit under the header.
    page.locator("#config-panel summary").click()
    wait_js(page, "() => document.getElementById('chart-layer-heatmap')?.data?.length === 1")
    DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
    shutil.copyfile(screenshot(page, "run-page-1440-top", full_page=False), DOCS_SCREENSHOT)
    page.locator("#config-panel summary").click()
    assert wide.stat().st_size > 0
    page.set_viewport_size({"width": 390, "height": 844})
    wait_js(page, "() => document.documentElement.scrollWidth <= 390")
    screenshot(page, "run-page-390")


def test_weight_histogram_shows_the_threshold_at_the_selected_epoch(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("histograms", epochs=4)
    worker.complete(run_id, 4, with_masks=True, histograms=True)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"/runs/{run_id}")
    page.locator("#mask-caption").filter(has_text="epoch 4").wait_for()
    page.locator("#chart-histogram").scroll_into_view_if_needed()
    wait_js(page, "() => document.getElementById('chart-histogram')?.layout?.meta?.epoch === 4")
    stored = worker.client.get(f"/api/runs/{run_id}/layers/fc1.weight", params={"epoch": 4}).json()
    threshold = stored["threshold"]
    meta = chart(page, "chart-histogram", "el.layout.meta")
    assert meta == {"layer": "fc1.weight", "epoch": 4, "threshold": threshold}
    assert chart(page, "chart-histogram", "el.layout.xaxis.type") == "log"
    line = chart(page, "chart-histogram", "el.layout.shapes[0]")
    assert (line["x0"], line["x1"], line["yref"]) == (threshold, threshold, "paper")
    # The threshold line sits where θ is on the drawn log axis (shapes take data values there).
    drawn = chart(page, "chart-histogram", "[el._fullLayout.xaxis.d2p(el.layout.shapes[0].x0),"
                  " el.querySelector('.shapelayer path').getBBox().x - el._fullLayout._size.l]")
    assert abs(drawn[0] - drawn[1]) < 2
    names = chart(page, "chart-histogram", "el.data.map(t => t.name)")
    assert names[:2] == ["all weights", "kept by the mask"]
    kept = sum(stored["histogram"]["kept"])
    caption = page.locator("#histogram-caption").inner_text()
    assert f"{sum(stored['histogram']['counts']):,} non-zero weights" in caption and f"{kept:,} kept" in caption
    # One layer at one epoch per request, never every epoch.
    assert any(f"/api/runs/{run_id}/layers/fc1.weight?epoch=4" in url for url in requests)
    # Another layer and another epoch follow the inspector's layer select and slider.
    page.locator("#inspector").scroll_into_view_if_needed()
    page.get_by_label("Layer", exact=True).select_option("fc2.weight")
    slider = page.get_by_label("Epoch", exact=True)
    slider.focus()
    page.keyboard.press("Home")
    page.locator("#histogram-caption").filter(has_text="fc2.weight · epoch 1 ").wait_for()
    page.locator("#chart-histogram").scroll_into_view_if_needed()
    wait_js(page, "() => document.getElementById('chart-histogram')?.layout?.meta?.epoch === 1")
    first = worker.client.get(f"/api/runs/{run_id}/layers/fc2.weight", params={"epoch": 1}).json()
    assert chart(page, "chart-histogram", "el.layout.meta.threshold") == first["threshold"] != threshold


def test_a_run_without_histograms_says_so(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("no-histograms", epochs=2)
    worker.complete(run_id, 2, with_masks=True)
    page.goto(f"/runs/{run_id}")
    page.locator("#chart-histogram").scroll_into_view_if_needed()
    text = wait_js(page, "() => document.getElementById('chart-histogram')?.layout?.annotations?.[0]?.text")
    assert text == "No weight histogram recorded for fc1.weight at epoch 2"


def test_the_config_panel_starts_closed_on_a_phone(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("phone-config", epochs=2)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"/runs/{run_id}")
    panel = page.locator("#config-panel")
    panel.wait_for()
    assert panel.get_attribute("open") is None  # the charts are not pushed screens down
    assert page.locator("#config-panel [data-field='training.lr']").is_hidden()
    panel.locator("summary").click()
    assert page.locator("#config-panel [data-field='training.lr']").is_visible()
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"/runs/{run_id}")
    page.locator("#config-panel[open]").wait_for()  # wide screens show it open


def test_a_first_layer_that_is_not_over_an_image_gets_no_connectivity_card_and_no_404(
        page: Any, watch: PageWatch, worker: FakeWorker) -> None:
    # A Linear over 30 features (or a conv: the fuzzed stack's ResNets, small CNNs): the map does not apply, and
    # asking for it logged a 404 in the console of every such run's page.
    run_id = worker.submit("tabular", epochs=3)
    worker.complete(run_id, 3, with_masks=True, layers=(("fc1.weight", (16, 30)), ("fc2.weight", (4, 16))))
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/connectivity" in request.url else None)
    page.goto(f"/runs/{run_id}")
    page.locator("#mask-caption").filter(has_text="epoch 3").wait_for()
    page.locator("#inspector").scroll_into_view_if_needed()
    wait_js(page, "() => document.getElementById('chart-mask')?.layout?.meta?.epoch === 3")
    assert page.locator("#connectivity-card").is_hidden()
    assert asked == []
    assert watch.errors == []
