"""Faults an outside review found in the dashboard: form messages that say what to do, tables that do not split
values, charts for what a tracked run logged, and pages that say what a finished run will never have."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

import prunescope
from tests.browser.conftest import API_TOKEN, FakeWorker, PageWatch, chart, wait_js, wait_points

pytestmark = pytest.mark.browser


def sweeps_total(worker: FakeWorker) -> int:
    return int(worker.client.get("/api/sweeps").json()["total"])


def test_an_empty_nm_pair_is_marked_before_a_sweep_is_submitted(page: Any, worker: FakeWorker) -> None:
    before = sweeps_total(worker)
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    page.goto("/runs/new?preset=gmp")
    page.get_by_label("Sweep: try several values").check()
    page.get_by_label("Granularity").select_option(["unstructured", "n:m"])
    page.get_by_label("Model", exact=True).select_option(["mlp", "lenet300_100"])
    page.get_by_label("Optimizer").select_option(["sgd", "adam"])
    page.get_by_role("button", name="Start sweep (8 runs)").click()
    error = page.locator("#f-pruning-n-m-error")
    error.wait_for()
    assert error.inner_text() == "N:M needs n and m, e.g. 2 : 4"
    assert page.get_by_label("n (kept)").get_attribute("aria-invalid") == "true"
    assert not [url for url in posted if "/api/" in url]
    assert sweeps_total(worker) == before
    # Outside a sweep, n without m is marked the same way.
    page.get_by_label("Sweep: try several values").uncheck()
    page.get_by_label("Granularity").select_option("n:m")
    page.get_by_label("n (kept)").fill("2")
    page.get_by_role("button", name="Start run").click()
    page.locator("#f-pruning-n-m-error", has_text="N:M needs n and m").wait_for()
    assert not [url for url in posted if "/api/" in url]


def test_a_sweep_fault_repeated_per_combination_is_shown_once(page: Any, worker: FakeWorker, watch: PageWatch) -> None:
    watch.expect_failed_request("/api/sweeps")
    before = sweeps_total(worker)
    page.goto("/runs/new?preset=gmp")
    page.get_by_label("Sweep: try several values").check()
    page.get_by_label("Optimizer").select_option(["sgd", "adam"])
    page.get_by_label("Model", exact=True).select_option(["mlp", "lenet300_100"])
    page.get_by_label("Target sparsity").fill("1.5")  # one value: the base, refused in every combination
    page.get_by_role("button", name="Start sweep (4 runs)").click()
    error = page.locator("#f-pruning-target-sparsity-error")
    error.wait_for()
    text = error.inner_text()
    assert "combination" not in text.replace("in all 4 combinations", ""), text
    assert text.endswith("(in all 4 combinations)"), text
    assert text.count("less than") == 1, text
    assert sweeps_total(worker) == before


@pytest.mark.parametrize("typed", ["300; 100", "0", "300, 1.5"])
def test_hidden_widths_that_are_not_positive_whole_numbers_are_marked(page: Any, worker: FakeWorker,
                                                                     typed: str) -> None:
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    page.goto("/runs/new?preset=gmp")
    page.get_by_label("Model", exact=True).select_option("mlp")
    page.get_by_label("Hidden layer widths").fill(typed)
    page.get_by_role("button", name="Start run").click()
    error = page.locator("#f-model-hidden-error")
    error.wait_for()
    text = error.inner_text()
    assert "separated by commas" in text and "none: no hidden layer" in text, text
    assert page.get_by_label("Hidden layer widths").get_attribute("aria-invalid") == "true"
    assert not [url for url in posted if "/api/" in url]
    page.get_by_label("Hidden layer widths").fill("300, 100")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    assert worker.run(int(page.url.rsplit("/", 1)[1]))["config"]["model"]["hidden"] == [300, 100]


def test_the_configuration_diff_does_not_split_values_on_a_phone(page: Any, worker: FakeWorker) -> None:
    a = worker.submit("phone-diff-a", epochs=2, training={"epochs": 2, "lr": 0.0001, "weight_decay": 0.00012345})
    b = worker.submit("phone-diff-b", epochs=2, training={"epochs": 2, "lr": 0.02, "weight_decay": 0.00054321})
    c = worker.submit("phone-diff-c", epochs=2, training={"epochs": 2, "lr": 0.0003, "weight_decay": 0.00098765})
    for run_id in (a, b, c):
        worker.complete(run_id, 2)
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"/compare?ids={a},{b},{c}")
    table = page.locator("#config-diff-table")
    table.wait_for()
    page.get_by_label("Show all").check()
    table.locator("tr[data-field='model.name']").wait_for()
    # Every value without a space sits on one line (a Range over a wrapped text has one rect per line).
    split = page.evaluate("""() => [...document.querySelectorAll('#config-diff-table td')]
        .filter((td) => !/\\s/.test(td.textContent) && td.firstChild)
        .filter((td) => { const r = document.createRange(); r.selectNodeContents(td);
                          return new Set([...r.getClientRects()].map((x) => Math.round(x.top))).size > 1; })
        .map((td) => td.textContent)""")
    assert split == [], split
    assert "0.0001" in table.locator("tr[data-field='training.lr'] td").all_inner_texts()
    assert page.evaluate("""() => { const w = document.querySelector('#config-diff .table-wrap');
        return w.scrollWidth > w.clientWidth; }""")  # the wrapper scrolls; the page does not
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def test_a_tracked_runs_other_scalars_get_a_chart_and_unlogged_series_no_legend(
        page: Any, token_base_url: str, tmp_path: Path) -> None:
    run = prunescope.init(name="extras-script", config={"lr": 0.1}, api=token_base_url, token=API_TOKEN,
                          dir=tmp_path, epochs=3)
    try:
        run.log(epoch=1, train_loss=0.5, test_acc=0.8, grad_norm=1.5)
        run.log(epoch=2, train_loss=0.4, test_acc=0.85, grad_norm=1.2, weight_norm=30.0)
        run.log(epoch=3, train_loss=0.3, test_acc=0.9, weight_norm=31.0)
    finally:
        run.finish()
    page.goto(f"{token_base_url}/runs/{run.id}")
    page.locator("#extra-scalars h2", has_text="Other logged scalars").wait_for()
    wait_points(page, "chart-extra", 3)
    traces = chart(page, "chart-extra", "el.data.map(t => [t.name, t.x, t.y])")
    assert traces == [["grad_norm", [1, 2, 3], [1.5, 1.2, None]], ["weight_norm", [1, 2, 3], [None, 30.0, 31.0]]]
    names = chart(page, "chart-loss", "el.data.map(t => t.name)")
    assert names == ["train loss", "test acc."]  # no empty "test loss" / "train acc." in the legend


def test_a_run_without_other_scalars_shows_no_such_chart(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("no-extras", epochs=2)
    worker.complete(run_id, 2)
    page.goto(f"/runs/{run_id}")
    wait_points(page, "chart-loss", 2)
    assert page.locator("#extra-scalars").is_hidden()
    names = chart(page, "chart-loss", "el.data.map(t => t.name)")
    assert names == ["train loss", "test loss", "train acc.", "test acc."]


def test_an_unset_recovery_interval_says_what_applies(page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("rigl-default-interval", epochs=3, pruning={
        "target_sparsity": 0.9, "recovery": {"kind": "gradient"},
        "schedule": {"kind": "constant", "start_epoch": 0}})
    assert "every_steps" not in worker.run(run_id)["config"]["pruning"]["recovery"]
    page.goto(f"/runs/{run_id}")
    row = page.locator("#config-panel [data-field='pruning.recovery.every_steps']")
    row.wait_for()
    assert row.locator("dt").inner_text() == "every steps"
    assert row.locator("dd").inner_text() == "— (default: 100, or once an epoch when an epoch is shorter)"
    # A recovery that does not drop and regrow on an interval gets no such line.
    splice = worker.submit("splice-no-interval", epochs=3)
    page.goto(f"/runs/{splice}")
    page.locator("#config-panel [data-field='pruning.recovery.kind']").wait_for()
    assert page.locator("#config-panel [data-field='pruning.recovery.every_steps']").count() == 0


def test_a_run_that_failed_before_its_first_epoch_says_no_layer_statistics_will_come(
        page: Any, worker: FakeWorker) -> None:
    run_id = worker.submit("failed-early", epochs=3)
    worker.start(run_id)
    worker.finish(run_id, status="failed", error="RuntimeError: CUDA out of memory")
    page.goto(f"/runs/{run_id}")
    page.locator("#run-failure").wait_for()
    page.locator("#layer-table td.empty",
                 has_text="No per-layer statistics: the run ended before its first epoch.").wait_for(state="attached")
    assert "yet" not in page.locator("#layer-table").inner_text()


OVERLAPS = """() => {
  const el = document.getElementById('chart-sweep');
  const boxes = [...el.querySelectorAll('.annotation')].map((a) => {
    const r = (a.querySelector('.annotation-text-g') || a).getBoundingClientRect();
    const title = a.getAttribute('data-index') !== null
      && el.layout.annotations[Number(a.getAttribute('data-index'))]?.name === 'dimension';
    return { text: a.textContent, title, left: r.left, right: r.right, top: r.top, bottom: r.bottom };
  }).filter((b) => b.right > b.left);
  const out = [];
  for (let i = 0; i < boxes.length; i += 1) for (let j = i + 1; j < boxes.length; j += 1) {
    const a = boxes[i]; const b = boxes[j];
    // Tilted titles are parallel: their boxes overlap while the text does not (checked by their starts below).
    if (a.title && b.title && el.layout.annotations.find((x) => x.name === 'dimension').textangle) continue;
    const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
    const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    if (w > 1 && h > 1) out.push([a.text, b.text]);
  }
  const starts = boxes.filter((b) => b.title).map((b) => b.left);
  return { count: boxes.length, overlaps: out, starts };
}"""


@pytest.mark.parametrize("width", [1280, 390])
def test_the_sweep_chart_labels_do_not_print_over_each_other(page: Any, worker: FakeWorker, width: int) -> None:
    base = {"name": f"labels-{width}", "dataset": {"name": "digits"}, "training": {"epochs": 2},
            "pruning": {"target_sparsity": 0.9, "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": 2}}}
    grid = {"pruning.granularity": ["unstructured", "neuron"], "model.name": ["mlp", "lenet300_100"],
            "training.lr": [0.0001, 0.0002, 0.1]}
    sweep = worker.client.post("/api/sweeps", json={"name": f"labels-{width}", "base": base, "grid": grid}).json()
    runs = [r["id"] for r in sweep["runs"]]
    for i, run_id in enumerate(runs[:4]):  # lr 0.0001, 0.0002 and 0.1; accuracies a hair apart
        worker.complete(run_id, 2, accuracy=0.95 + i / 1000, sparsity=0.9 + i / 1000)
    page.set_viewport_size({"width": width, "height": 844})
    page.goto(f"/sweeps/{sweep['id']}")
    page.locator("#sweep-chart-caption", has_text="4 of 12 runs completed").wait_for()
    chart(page, "chart-sweep", "el.layout.meta")
    wait_js(page, "() => document.querySelectorAll('#chart-sweep .annotation').length > 5")
    found = page.evaluate(OVERLAPS)
    assert found["overlaps"] == [], found
    starts = found["starts"]
    assert len(starts) == 5 and all(b - a > 30 for a, b in itertools.pairwise(starts)), starts
    titles = page.evaluate("() => document.getElementById('chart-sweep').layout.annotations"
                           ".filter((a) => a.name === 'dimension').map((a) => a.text)")
    if width == 390:
        assert titles == ["granularity", "name", "lr", "final sparsity", "final accuracy"]
    else:
        assert titles == ["pruning.granularity", "model.name", "training.lr", "final sparsity", "final accuracy"]
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def test_an_unknown_preset_in_the_address_is_named_and_the_defaults_kept(page: Any, worker: FakeWorker) -> None:
    # ?preset=nonexistent silently opened the default form, where ?clone=999999 says the run could not be loaded.
    defaults = worker.client.get("/api/options").json()["defaults"]
    page.goto("/runs/new?preset=<b>nonexistent</b>")
    notice = page.locator("#preset-unknown")
    notice.wait_for()
    assert "<b>nonexistent</b>" in notice.inner_text()  # as text, never markup
    assert notice.locator("b").count() == 0
    assert page.get_by_label("Preset", exact=True).input_value() == ""
    body = json.loads(page.locator("#config-preview").text_content())
    assert body["preset"] is None
    assert body["training"]["epochs"] == defaults["training"]["epochs"]
    page.goto("/runs/new?preset=gmp")  # a known preset opens with no notice
    page.get_by_label("Preset", exact=True).wait_for()
    assert page.get_by_label("Preset", exact=True).input_value() == "gmp"
    assert page.locator("#preset-unknown").count() == 0
