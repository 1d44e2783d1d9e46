"""The dashboard in headless Chromium against a real API; the tests play the worker through its endpoints."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from tests.browser.conftest import (
    API_TOKEN,
    SCREENSHOTS,
    FakeWorker,
    PageWatch,
    chart_points,
    screenshot,
    wait_js,
    wait_points,
)

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"


def wait_drawn(page: Any, chart_id: str, epoch: int) -> None:
    """Wait until a mask-inspector chart shows `epoch` (charts off screen are drawn only once scrolled to)."""
    wait_js(page, "([id, e]) => document.getElementById(id)?.layout?.meta?.epoch === e", [chart_id, epoch])


def test_submitting_the_form_queues_the_run_and_opens_its_page(page: Any, worker: FakeWorker) -> None:
    page.goto("/runs/new")
    page.get_by_label("Preset").select_option("gmp")
    page.get_by_label("Name", exact=True).fill("form-submitted-run")
    page.get_by_label("Epochs").fill("4")
    page.get_by_label("Schedule end epoch").fill("3")
    screenshot(page, "new-run")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    page.get_by_role("heading", name="form-submitted-run").wait_for()
    assert page.locator(".run-title .badge").inner_text() == "queued"
    run = worker.run(run_id)
    assert run["status"] == "queued"
    assert run["config"]["preset"] == "gmp"
    assert run["config"]["training"]["epochs"] == 4
    assert run["config"]["pruning"]["schedule"]["end_epoch"] == 3


def test_fields_appear_only_where_they_apply(page: Any) -> None:
    page.goto("/runs/new")
    page.get_by_label("Preset").select_option("dense")
    assert page.get_by_label("Criterion").is_hidden()
    page.get_by_label("Prune this network").check()
    assert page.get_by_label("Criterion").is_visible()
    recovery = page.get_by_label("Recovery", exact=True)
    recovery.select_option("splice")
    assert page.get_by_label("Splice margin").is_visible()
    assert page.get_by_label("Drop fraction").is_hidden()
    recovery.select_option("gradient")
    assert page.get_by_label("Splice margin").is_hidden()
    assert page.get_by_label("Drop fraction").is_visible()
    assert page.get_by_label("n (kept)").is_hidden()
    page.get_by_label("Granularity").select_option("n:m")
    assert page.get_by_label("n (kept)").is_visible()
    assert page.get_by_label("Target sparsity").is_hidden()
    assert page.get_by_label("Hidden layer widths").is_hidden()
    page.get_by_label("Model", exact=True).select_option("mlp")
    assert page.get_by_label("Hidden layer widths").is_visible()
    page.set_viewport_size({"width": 420, "height": 900})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth") <= 420
    screenshot(page, "new-run-narrow", full_page=False)


def test_bad_values_show_their_messages_next_to_the_fields(page: Any, watch: PageWatch, worker: FakeWorker) -> None:
    watch.expect_failed_request("/api/runs")
    before = worker.client.get("/api/runs").json()["total"]
    page.goto("/runs/new")
    page.get_by_label("Preset").select_option("dns")
    page.get_by_label("Learning rate").fill("-1")
    page.get_by_role("button", name="Start run").click()
    error = page.locator("#f-training-lr-error")
    error.filter(has_text=re.compile(".")).wait_for()
    assert "greater than 0" in error.inner_text()
    screenshot(page, "new-run-field-error", full_page=False)
    assert page.get_by_label("Learning rate").get_attribute("aria-invalid") == "true"
    # A cross-field rule lands at every field it involves (its 422 entries are located, no prose is parsed).
    page.get_by_label("Learning rate").fill("0.05")
    page.get_by_label("Criterion").select_option("activation")
    page.get_by_role("button", name="Start run").click()
    page.locator("#f-pruning-criterion-error", has_text="activation").wait_for()
    page.locator("#f-pruning-granularity-error", has_text="activation").wait_for()
    assert page.locator("#f-training-lr-error").inner_text() == ""
    screenshot(page, "new-run-errors")
    # A whole-config rule: the schedule's end epoch and Epochs are both marked.
    page.get_by_label("Criterion").select_option("magnitude")
    page.get_by_label("Epochs").fill("10")  # rescales the schedule's end epoch from 20 to 7 …
    page.get_by_label("Schedule end epoch").fill("12")  # … so put it after the last epoch by hand
    page.get_by_role("button", name="Start run").click()
    page.locator("#f-pruning-schedule-end-epoch-error", has_text="after the last epoch").wait_for()
    page.locator("#f-training-epochs-error", has_text="after the last epoch").wait_for()
    assert page.locator("#section-pruning-error").inner_text() == ""
    assert page.url.endswith("/runs/new")
    assert worker.client.get("/api/runs").json()["total"] == before


def test_run_page_gains_points_live_and_keeps_the_zoom(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("live-run", epochs=6)
    worker.start(run_id)
    worker.epoch(run_id, 1, 6, with_masks=True)
    page.goto(f"/runs/{run_id}")
    wait_points(page, "chart-loss", 1)
    page.evaluate("window.__sameDocument = true")
    page.evaluate("Plotly.relayout('chart-sparsity', {'xaxis.range': [0.5, 2.5]})")
    latencies = []
    for epoch in (2, 3):
        worker.epoch(run_id, epoch, 6, with_masks=True)
        posted = time.perf_counter()
        wait_points(page, "chart-loss", epoch)
        latencies.append(time.perf_counter() - posted)
    # The spec's 0.5 s live target is a benchmark figure (bench/dashboard_bench.py), not a timed assertion.
    record_timing("live_epoch_to_chart_s", latencies)
    wait_points(page, "chart-sparsity", 3)
    assert page.evaluate("window.__sameDocument") is True  # no reload
    assert page.evaluate("document.getElementById('chart-sparsity').layout.xaxis.range") == [0.5, 2.5]
    page.locator("#chart-layer-heatmap").scroll_into_view_if_needed()  # drawn once near the viewport
    assert wait_js(page, "() => document.getElementById('chart-layer-heatmap')?.data?.[0]?.z?.[0]?.length") == 3
    assert page.locator(".run-header .progress .label").inner_text().startswith("epoch 3/6")
    page.locator("#mask-caption").filter(has_text="epoch 3").wait_for()
    streams: list[str] = []
    page.on("request", lambda request: streams.append(request.url) if "/events" in request.url else None)
    for epoch in (4, 5, 6):  # a run completes only with every epoch recorded
        worker.epoch(run_id, epoch, 6)
    worker.finish(run_id, summary={"final_sparsity": 0.5, "final_test_acc": 0.93, "best_test_acc": 0.93})
    page.locator(".run-title .badge", has_text="completed").wait_for()
    wait_points(page, "chart-loss", 6)
    page.wait_for_timeout(2500)  # the server asks for a 1 s retry: a stream left open would reconnect by now
    assert streams == [], f"the finished run's stream reconnected: {streams}"


def test_run_page_falls_back_to_polling_when_the_stream_fails(page: Any, watch: PageWatch, worker: FakeWorker) -> None:
    watch.expect_failed_request("/events")
    page.route("**/api/runs/*/events*", lambda route: route.abort())
    run_id = worker.submit("no-stream", epochs=4)
    worker.start(run_id)
    worker.epoch(run_id, 1, 4)
    page.goto(f"/runs/{run_id}")
    wait_points(page, "chart-loss", 1)
    worker.epoch(run_id, 2, 4)
    wait_points(page, "chart-loss", 2)  # polled every 2 s
    worker.finish(run_id, status="failed", error="CUDA error: out of memory <script>alert(1)</script>")
    page.locator(".run-title .badge", has_text="failed").wait_for()
    reason = page.locator("#run-failure .failure-reason").inner_text()
    assert reason == "CUDA error: out of memory <script>alert(1)</script>"


def test_mask_slider_scrubs_through_epochs(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("lenet300-dns", epochs=16, tags=["dns", "mnist"])
    worker.complete(run_id, 16, accuracy=0.978, sparsity=0.95, with_masks=True)
    page.goto(f"/runs/{run_id}")
    page.locator("#mask-caption").filter(has_text="epoch 16").wait_for()
    page.locator("#inspector").scroll_into_view_if_needed()
    wait_drawn(page, "chart-mask", 16)
    wait_drawn(page, "chart-connectivity", 16)
    last = page.evaluate("document.getElementById('chart-mask').data[0].z")
    slider = page.get_by_label("Epoch", exact=True)
    slider.focus()
    page.keyboard.press("Home")
    page.locator("#mask-caption").filter(has_text="epoch 1 ").wait_for()
    wait_drawn(page, "chart-mask", 1)
    first = page.evaluate("document.getElementById('chart-mask').data[0].z")
    assert first != last
    assert page.locator("#epoch-label").inner_text() == "epoch 1 / 16"
    assert "Layers at epoch 1" in page.locator("#layer-table caption").inner_text()
    page.keyboard.press("ArrowRight")
    page.locator("#mask-caption").filter(has_text="epoch 2 ").wait_for()
    page.locator("#connectivity-caption").filter(has_text="epoch 2 ").wait_for()
    page.locator("#ages-caption").filter(has_text="fc1.weight · epoch 2 ").wait_for()
    page.locator("#chart-ages").scroll_into_view_if_needed()
    wait_drawn(page, "chart-ages", 2)
    assert page.evaluate("document.getElementById('chart-ages').data.map(t => t.name)") == ["kept", "pruned"]
    page.locator("#inspector").scroll_into_view_if_needed()
    page.get_by_label("Layer", exact=True).select_option("fc2.weight")
    page.locator("#mask-caption").filter(has_text="fc2.weight · epoch 2 ").wait_for()
    page.get_by_role("button", name="Play epochs").click()
    page.locator("#mask-caption").filter(has_text="epoch 4 ").wait_for()
    page.get_by_role("button", name="Pause").click()
    page.get_by_label("Layer", exact=True).select_option("fc1.weight")
    slider.focus()
    page.keyboard.press("End")
    page.locator("#mask-caption").filter(has_text="fc1.weight · epoch 16 ").wait_for()
    screenshot(page, "run")
    page.set_viewport_size({"width": 420, "height": 900})
    # Plotly resizes responsive charts on a debounced window resize; then nothing is wider than the screen.
    wait_js(page, "() => document.documentElement.scrollWidth <= 420")
    page.wait_for_timeout(300)
    screenshot(page, "run-narrow")


def test_cancel_button_stops_a_running_run(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("cancel-me", epochs=10)
    page.goto(f"/runs/{run_id}")
    page.locator(".run-title .badge", has_text="queued").wait_for()
    worker.start(run_id)
    worker.epoch(run_id, 1, 10)
    wait_points(page, "chart-loss", 1)
    page.locator(".facts div", has_text="attempts").filter(has_text="1").wait_for()  # re-read on the status change
    assert page.locator(".facts div", has_text="worker").inner_text().endswith("w1")
    page.get_by_role("button", name="Cancel run").click()
    page.get_by_role("dialog").get_by_role("button", name="Yes, cancel it").click()
    page.get_by_role("button", name="Cancel requested…").wait_for()
    assert worker.run(run_id)["cancel_requested"] is True
    ack = worker.epoch(run_id, 2, 10)
    assert ack["cancel"] is True
    worker.finish(run_id, status="cancelled")
    page.locator(".run-title .badge", has_text="cancelled").wait_for()
    assert page.get_by_role("button", name=re.compile("Cancel")).is_hidden()


def test_cancel_of_a_queued_run_is_immediate(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("cancel-queued", epochs=3)
    page.goto(f"/runs/{run_id}")
    page.get_by_role("button", name="Cancel run").click()
    page.get_by_role("dialog").get_by_role("button", name="Yes, cancel it").click()
    page.locator(".run-title .badge", has_text="cancelled").wait_for()
    assert worker.run(run_id)["status"] == "cancelled"


def test_compare_two_runs_from_the_runs_list(page: Any, worker: FakeWorker) -> None:
    a = worker.submit("compare-a", epochs=5, tags=["cmp"])
    b = worker.submit("compare-b", epochs=5, tags=["cmp"])
    worker.complete(a, 5, accuracy=0.96, sparsity=0.8)
    worker.complete(b, 5, accuracy=0.91, sparsity=0.95)
    page.goto("/?tag=cmp")
    page.get_by_role("checkbox", name=f"Select run {a} to compare").check()
    page.get_by_role("checkbox", name=f"Select run {b} to compare").check()
    page.get_by_role("button", name="Compare selected (2)").click()
    page.wait_for_url(re.compile(rf"/compare\?ids={a},{b}$"))
    wait_js(page, "() => document.getElementById('compare-test_acc')?.data?.length === 2")
    assert chart_points(page, "compare-test_acc", 1) == 5
    page.locator("#chart-pareto").scroll_into_view_if_needed()
    wait_js(page, "() => document.getElementById('chart-pareto')?.data?.length >= 2")
    names = page.locator("#compare-table td.name").all_inner_texts()
    assert names == [f"#{a} compare-a", f"#{b} compare-b"]
    front = page.evaluate("document.getElementById('chart-pareto').data.find(t => t.name === 'Pareto front').x.length")
    assert front >= 1
    screenshot(page, "compare")
    page.set_viewport_size({"width": 420, "height": 900})
    wait_js(page, "() => document.documentElement.scrollWidth <= 420")
    screenshot(page, "compare-narrow", full_page=False)


def test_compare_without_runs_still_shows_the_pareto_front(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("pareto-only", epochs=2)
    worker.complete(run_id, 2, accuracy=0.99, sparsity=0.99)
    page.goto("/")
    page.locator(f"#runs-table tr[data-run-id='{run_id}']").wait_for()  # the list has drawn: the nav is in place
    page.get_by_role("link", name="Compare", exact=True).click()
    # The router navigates in the page (pushState): poll the URL rather than wait for a load event.
    pytest.importorskip("playwright.sync_api").expect(page).to_have_url(re.compile(r"/compare$"))
    page.get_by_text("Pick runs to overlay").wait_for()
    page.locator("#chart-pareto").scroll_into_view_if_needed()
    wait_js(page, "() => document.getElementById('chart-pareto')?.data?.some(t => t.customdata?.length)")
    assert page.locator("#compare-curves").is_hidden()


def test_runs_list_filters_sorts_pages_and_moves_live(page: Any, worker: FakeWorker) -> None:
    ids = [worker.submit(f"page-{i:02d}", epochs=4, tags=["paging"]) for i in range(27)]
    page.goto("/?tag=paging")
    page.locator("#runs-table tbody tr").nth(24).wait_for()
    assert page.locator("#runs-table tbody tr").count() == 25
    assert page.locator(".pager").inner_text().startswith("1–25 of 27")
    page.get_by_role("button", name="Next").click()
    page.locator(".pager", has_text="26–27 of 27").wait_for()
    for offset in ("500", "2000000000", "1e400"):  # past the end: it said "No runs yet" with "501–27 of 27"
        page.goto(f"/?tag=paging&offset={offset}")
        page.locator(".pager", has_text="26–27 of 27").wait_for()
        assert page.locator("#runs-table tbody tr").count() == 2
        assert page.locator(".notice.error").count() == 0
    page.get_by_role("button", name="Name").click()  # ascending by name, back to the first page
    page.locator(".pager", has_text="1–25 of 27").wait_for()
    assert page.locator("#runs-table td.name a").first.inner_text() == "page-00"
    assert "sort=name" in page.url
    page.get_by_label("Search").fill("page-1")
    page.locator(".pager", has_text="1–10 of 10").wait_for()
    page.get_by_label("Search").fill("page-05")
    page.locator(".pager", has_text="1–1 of 1").wait_for()
    row = page.locator(f"tr[data-run-id='{ids[5]}']")
    assert row.locator(".progress .label").inner_text() == "epoch 0/4"
    worker.start(ids[5])
    worker.epoch(ids[5], 1, 4)
    row.locator(".progress .label", has_text="epoch 1/4").wait_for(timeout=8000)  # polled every 2 s
    row.locator(".badge", has_text="running").wait_for()
    page.get_by_label("Status").select_option("completed")
    page.get_by_text("No runs match these filters.").wait_for()
    assert "status=completed" in page.url
    page.get_by_label("Status").select_option("")
    page.get_by_label("Tag").fill("")
    page.wait_for_url(lambda url: "tag=" not in url)
    page.locator(f"tr[data-run-id='{ids[5]}'] button.tag", has_text="paging").click()  # a tag filters by it
    page.wait_for_url(lambda url: "tag=paging" in url)
    assert page.get_by_label("Tag").input_value() == "paging"


def test_a_hand_edited_runs_url_lists_runs_and_bad_range_values_are_said(page: Any, watch: PageWatch,
                                                                          worker: FakeWorker) -> None:
    # The API's raw 422 (a long pattern, cut off at the page's edge), and "nope" added to the Status choices; a
    # Min sparsity of 150 was marked but dropped the filter without a word.
    worker.submit("url-edited", epochs=2, tags=["url-edited"])
    page.goto("/?tag=url-edited&sort=bogus&status=nope&offset=-1&limit=abc&min_acc=7")
    page.locator("#runs-table td.name a", has_text="url-edited").wait_for()
    assert page.locator(".notice.error").count() == 0
    assert page.get_by_label("Status").input_value() == ""
    assert page.locator("#filter-status option[value='nope']").count() == 0
    page.get_by_label("Min sparsity %").fill("150")
    note = page.locator("#filter-min_sparsity-note")
    note.filter(has_text="not applied: a percentage from 0 to 100").wait_for()
    page.get_by_label("Min sparsity %").fill("50")
    page.wait_for_url(lambda url: "min_sparsity=0.5" in url)
    assert note.inner_text() == ""


def test_a_hostile_run_name_is_shown_as_text_everywhere(page: Any, watch: PageWatch, worker: FakeWorker) -> None:
    layers = ((f"{XSS}.weight", (20, 30)), ("<b onmouseover=alert(2)>bold", (10, 20)))
    run_id = worker.submit(XSS, epochs=3, tags=[XSS])
    worker.complete(run_id, 3, layers=layers, with_masks=True)
    other = worker.submit("plain", epochs=3)
    worker.complete(other, 3)
    page.goto(f"/?q={XSS[:4]}")
    page.get_by_role("link", name=XSS).wait_for()
    page.get_by_role("link", name=XSS).click()
    page.get_by_role("heading", name=XSS).wait_for()
    page.locator("#mask-caption").filter(has_text=f"{XSS}.weight · epoch 3").wait_for()
    page.locator("#chart-layer-lines").scroll_into_view_if_needed()
    wait_js(page, "() => document.getElementById('chart-layer-lines')?.data?.length === 2")
    assert page.locator("#connectivity-card").is_hidden()  # its first layer is not over an image: no map, no 404
    legend = page.locator("#chart-layer-lines .legendtext").all_text_contents()
    assert f"{XSS}.weight" in legend and "<b onmouseover=alert(2)>bold" in legend
    assert page.locator("#layer-table td.name").first.inner_text() == f"{XSS}.weight"
    page.goto(f"/compare?ids={run_id},{other}")
    wait_js(page, "() => document.getElementById('compare-test_acc')?.data?.length === 2")
    assert page.locator("#compare-test_acc .legendtext").first.text_content() == f"#{run_id} {XSS}"
    page.goto(f"/runs/new?clone={run_id}")
    assert page.get_by_label("Name", exact=True).input_value() == f"{XSS} (copy)"
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("b").count() == 0


def test_clone_prefills_the_form_from_the_run(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("clone-source", epochs=7, training={"epochs": 7, "lr": 0.02},
                           pruning={"target_sparsity": 0.8, "recovery": {"kind": "gradient", "drop_fraction": 0.2}})
    page.goto(f"/runs/{run_id}")
    page.get_by_role("link", name="Clone this run").click()
    page.wait_for_url(re.compile(rf"/runs/new\?clone={run_id}$"))
    assert page.get_by_label("Name", exact=True).input_value() == "clone-source (copy)"
    assert page.get_by_label("Epochs").input_value() == "7"
    assert page.get_by_label("Learning rate").input_value() == "0.02"
    assert page.get_by_label("Target sparsity").input_value() == "0.8"
    assert page.get_by_label("Drop fraction").input_value() == "0.2"
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    clone = worker.run(int(page.url.rsplit("/", 1)[1]))
    assert clone["config"]["pruning"] == worker.run(run_id)["config"]["pruning"]


def test_workers_page_lists_online_workers(page: Any, worker: FakeWorker) -> None:
    worker.heartbeat()
    page.goto("/workers")
    row = page.locator("#workers-table tbody tr", has_text="gpu-box-1")
    row.wait_for()
    assert "NVIDIA H100" in row.inner_text()
    screenshot(page, "workers")


def test_runs_page_in_both_themes_and_narrow(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("theme-run", epochs=4)
    worker.start(run_id)
    worker.epoch(run_id, 1, 4)
    page.goto("/")
    page.locator(f"tr[data-run-id='{run_id}']").wait_for()
    screenshot(page, "runs-light", full_page=False)
    page.get_by_role("button", name="Switch to dark theme").click()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    screenshot(page, "runs-dark", full_page=False)
    page.goto(f"/runs/{run_id}")  # the choice survives navigation and reloads
    wait_points(page, "chart-loss", 1)
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    screenshot(page, "run-dark")
    page.set_viewport_size({"width": 420, "height": 900})
    page.goto("/")
    page.locator(f"tr[data-run-id='{run_id}']").wait_for()
    screenshot(page, "runs-narrow", full_page=False)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 420, f"the page scrolls sideways at 420 px ({width} px wide)"
    page.get_by_role("button", name="Switch to light theme").click()


def test_a_large_run_page_draws_its_charts_and_answers_the_slider(page: Any, worker: FakeWorker) -> None:
    layers = tuple((f"block{i}.conv.weight", (64, 64)) for i in range(20))
    run_id = worker.submit("large-run", epochs=200)
    worker.start(run_id)
    for epoch in range(1, 201):
        worker.epoch(run_id, epoch, 200, layers=layers)
    worker.finish(run_id, summary={"final_sparsity": 0.9, "final_test_acc": 0.9, "best_test_acc": 0.9})
    page.goto("/?q=large-run")  # arrive from the runs list, as a user would: the static files are loaded
    link = page.get_by_role("link", name="large-run").first
    link.wait_for()
    wait_js(page, "() => window.Plotly !== undefined")  # fetched while the list is read (idle time)
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        link.click()
        # Interactive: the per-layer chart is drawn once scrolled to and the epoch slider answers.
        page.locator("#chart-layer-lines").scroll_into_view_if_needed()
        wait_js(page, "() => document.getElementById('chart-layer-lines')?.data?.length === 20")
        page.get_by_label("Epoch", exact=True).focus()  # scrolls the inspector into view, drawing what is there
        page.keyboard.press("Home")
        page.locator("#layer-table caption", has_text="Layers at epoch 1").wait_for()
        timings.append(time.perf_counter() - start)
        page.locator("#chart-churn").scroll_into_view_if_needed()
        wait_js(page, "() => document.getElementById('chart-churn')?.data?.length === 40")
        page.go_back()
        link.wait_for()
    # The 1 s target is a benchmark figure (bench/dashboard_bench.py prints it), not a timed assertion.
    record_timing("large_run_interactive_s", timings)


def test_run_can_be_renamed_annotated_and_deleted(page: Any, watch: PageWatch, worker: FakeWorker) -> None:
    watch.expect_failed_request("/api/runs/")  # the empty name is refused with a 422
    run_id = worker.submit("to-rename", epochs=2)
    worker.complete(run_id, 2)
    page.goto(f"/runs/{run_id}")
    page.get_by_role("button", name="Edit").click()
    page.get_by_label("Name", exact=True).fill("")
    page.get_by_role("button", name="Save").click()
    page.locator("#edit-name-error").filter(has_text="at least 1 character").wait_for()
    screenshot(page, "run-edit", full_page=False)
    page.get_by_label("Name", exact=True).fill("renamed")
    page.get_by_label("Tags").fill("keep, mnist")
    page.get_by_label("Notes").fill("best so far <script>alert(1)</script>\nsecond line")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("heading", name="renamed").wait_for()
    assert page.locator("#run-notes").inner_text() == "best so far <script>alert(1)</script>\nsecond line"
    run = worker.run(run_id)
    assert (run["name"], run["tags"]) == ("renamed", ["keep", "mnist"])
    page.get_by_role("button", name="Delete run").click()
    page.get_by_role("button", name="Keep").click()
    assert worker.client.get(f"/api/runs/{run_id}").status_code == 200
    page.get_by_role("button", name="Delete run").click()
    page.get_by_role("button", name="Delete for good").click()
    page.wait_for_url(re.compile(r"/$"))
    assert worker.client.get(f"/api/runs/{run_id}").status_code == 404


def test_an_active_run_offers_no_delete(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("still-queued", epochs=2)
    page.goto(f"/runs/{run_id}")
    page.get_by_role("button", name="Cancel run").wait_for()
    assert page.get_by_role("button", name="Delete run").is_hidden()


def test_a_server_with_an_api_token_asks_for_it_once(page: Any, watch: PageWatch, token_base_url: str) -> None:
    watch.expect_failed_request("/api/runs")  # the 401s that make the page ask
    page.goto(f"{token_base_url}/runs/new?preset=gmp")
    page.get_by_label("Name", exact=True).fill("needs-a-token")
    page.get_by_role("button", name="Start run").click()
    page.get_by_label("API token").fill("wrong")
    page.get_by_role("button", name="Use token").click()
    page.get_by_text("That API token was refused.").wait_for()
    page.get_by_label("API token").fill(API_TOKEN)
    page.get_by_role("button", name="Use token").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    page.get_by_role("button", name="Cancel run").click()  # the stored token is sent without asking
    page.get_by_role("dialog").get_by_role("button", name="Yes, cancel it").click()
    page.locator(".run-title .badge", has_text="cancelled").wait_for()
    assert page.locator(".token-banner").count() == 0


def record_timing(name: str, seconds: list[float]) -> None:
    """Timings for bench/dashboard_bench.py, one JSON line each, appended to test-artifacts/timings.jsonl."""
    SCREENSHOTS.parent.mkdir(parents=True, exist_ok=True)
    with (SCREENSHOTS.parent / "timings.jsonl").open("a") as handle:
        handle.write(json.dumps({"name": name, "seconds": seconds}) + "\n")
