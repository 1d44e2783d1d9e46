"""Plugin models and datasets: registered by decorator, found through PRUNESCOPE_PLUGINS and entry points only."""

from __future__ import annotations

import inspect
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
import torch

import prunescope
from prunescope import plugins
from worker.engine.capabilities import worker_capabilities
from worker.engine.datasets import DataBundle, load_dataset, synthetic_bundle
from worker.engine.networks import build_model

PLUGIN_SOURCE = textwrap.dedent('''
    import prunescope
    from torch import nn

    @prunescope.register_model("tiny_net", input_shape=(1, 8, 8))
    def build(input_shape, num_classes, width=4):
        c, h, w = input_shape
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, width), nn.ReLU(), nn.Linear(width, num_classes))

    @prunescope.register_dataset("tiny_data")
    def load(data_dir, n=32):
        from worker.engine.datasets import synthetic_bundle
        return synthetic_bundle((1, 8, 8), n_train=n, n_test=8)
''')


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> str:
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def test_plugins_named_in_the_environment_build_models_and_load_data(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, "ps_plugin_ok", PLUGIN_SOURCE)
    monkeypatch.setenv("PRUNESCOPE_PLUGINS", f" {module} , ")
    net = build_model({"name": "tiny_net", "params": {"width": 6}}, (1, 8, 8), 3)
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 3) and net[1].out_features == 6
    bundle = load_dataset({"name": "tiny_data", "params": {"n": 20}, "limit": 10}, tmp_path, model_name="tiny_net")
    assert isinstance(bundle, DataBundle) and bundle.train_size == 10
    caps = worker_capabilities()
    assert caps["models"] == {"tiny_net": ["1.weight", "3.weight"]} and caps["datasets"] == ["tiny_data"]
    assert caps["plugin_errors"] == []


def test_a_plugin_that_fails_to_import_is_reported_not_raised(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    broken = _module(tmp_path, monkeypatch, "ps_plugin_broken", "raise RuntimeError('no GPU driver')\n")
    exits = _module(tmp_path, monkeypatch, "ps_plugin_exits", "import sys\nsys.exit(3)\n")
    ok = _module(tmp_path, monkeypatch, "ps_plugin_ok2", PLUGIN_SOURCE)
    monkeypatch.setenv("PRUNESCOPE_PLUGINS", f"{broken},ps_plugin_missing,{exits},{ok}")
    caps = worker_capabilities()
    assert list(caps["models"]) == ["tiny_net"]  # the good plugin still loads
    errors = caps["plugin_errors"]
    assert len(errors) == 3
    assert "ps_plugin_broken: RuntimeError: no GPU driver" in errors[0]
    assert "ps_plugin_missing: ModuleNotFoundError" in errors[1] and "SystemExit" in errors[2]


def test_a_model_plugin_that_cannot_build_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRUNESCOPE_PLUGINS", "")

    @prunescope.register_model("broken_build")
    def build(input_shape: tuple[int, int, int], num_classes: int, depth: int = 2) -> torch.nn.Module:
        raise RuntimeError("no such checkpoint")

    caps = worker_capabilities()
    assert caps["models"] == {} and caps["model_params"] == {}
    assert "'broken_build'" in caps["plugin_errors"][0] and "no such checkpoint" in caps["plugin_errors"][0]


def test_no_config_makes_the_engine_import_a_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = _module(tmp_path, monkeypatch, "ps_plugin_never", "raise SystemExit('imported!')\n")
    monkeypatch.setenv("PRUNESCOPE_PLUGINS", "")
    for name in (module, "os", "subprocess"):
        with pytest.raises(ValueError, match="unknown model"):
            build_model({"name": name}, (1, 8, 8), 10)
        with pytest.raises(ValueError, match="unknown dataset"):
            load_dataset({"name": name}, tmp_path, model_name="mlp")
    assert module not in sys.modules


def test_entry_points_register_modules_and_functions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _module(tmp_path, monkeypatch, "ps_plugin_ep", PLUGIN_SOURCE)
    monkeypatch.setenv("PRUNESCOPE_PLUGINS", "")
    fake = {
        plugins.MODEL_GROUP: [metadata.EntryPoint("tiny", "ps_plugin_ep", plugins.MODEL_GROUP),
                              metadata.EntryPoint("linear_probe", "torch.nn:Linear", plugins.MODEL_GROUP),
                              metadata.EntryPoint("bad", "ps_plugin_absent:build", plugins.MODEL_GROUP)],
        plugins.DATASET_GROUP: [metadata.EntryPoint(
            "synthetic_small", f"{synthetic_bundle.__module__}:synthetic_bundle", plugins.DATASET_GROUP)],
    }
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group: fake[group])
    registry = plugins.ensure_loaded()
    assert {"tiny_net", "linear_probe"} <= set(registry.models) and "tiny_data" in registry.datasets
    assert "synthetic_small" in registry.datasets
    assert any("prunescope.models:bad" in e for e in plugins.plugin_errors())


@pytest.mark.parametrize("name", ["resnet20", "has space", "", "1abc"])
def test_plugin_names_must_be_new_and_well_formed(name: str) -> None:
    with pytest.raises(ValueError):
        prunescope.register_model(name)


def test_two_plugins_cannot_claim_one_name() -> None:
    def first(data_dir: Path) -> None: ...

    def second(data_dir: Path) -> None: ...

    prunescope.register_dataset("shared")(first)
    prunescope.register_dataset("shared")(first)  # the same function again (a module re-imported): fine
    with pytest.raises(ValueError, match="already registered"):
        prunescope.register_dataset("shared")(second)


def test_a_dataset_plugin_must_return_a_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PRUNESCOPE_PLUGINS", "")
    prunescope.register_dataset("wrong_type")(lambda data_dir: [1, 2, 3])
    with pytest.raises(TypeError, match="DataBundle or LoaderBundle"):
        load_dataset({"name": "wrong_type"}, tmp_path, model_name="mlp")


def test_heartbeat_advertises_plugins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from worker.heartbeat import WorkerIdentity, heartbeat_body

    module = _module(tmp_path, monkeypatch, "ps_plugin_hb", PLUGIN_SOURCE)
    monkeypatch.setenv("PRUNESCOPE_PLUGINS", module)
    body = heartbeat_body(WorkerIdentity("w", "h", ["cpu"], "cpu"), None)
    assert body.models == {"tiny_net": ["1.weight", "3.weight"]} and body.datasets == ["tiny_data"]
    assert body.model_dump(mode="json")["model_params"] == {
        "tiny_net": {"params": [{"name": "width", "required": False, "default": 4}], "any": False}}
    assert body.model_dump(mode="json")["dataset_params"] == {
        "tiny_data": {"params": [{"name": "n", "required": False, "default": 32}], "any": False}}


def test_a_model_plugin_that_needs_params_is_offered_with_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # `build(input_shape, num_classes, *, width)` could not be built without its params, so the worker reported it
    # as a plugin that "failed to build" and never offered it: no run could use it, from the form or the API.
    from torch import nn

    monkeypatch.setenv("PRUNESCOPE_PLUGINS", "")

    @prunescope.register_model("needs_width", input_shape=(1, 4, 4))
    def needs_width(input_shape: tuple[int, int, int], num_classes: int, *, width: int,
                    act: object = nn.ReLU, **extra: object) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(16, width), act(), nn.Linear(width, num_classes))

    capabilities = worker_capabilities()
    assert capabilities["models"] == {"needs_width": []}  # layers known once a run's params build it
    assert capabilities["model_params"]["needs_width"] == {"params": [
        {"name": "width", "required": True, "default": None},
        {"name": "act", "required": False, "default": None}], "any": True}  # a class default is not JSON
    assert capabilities["plugin_errors"] == []
    model = build_model({"name": "needs_width", "params": {"width": 6}}, (1, 4, 4), 3)
    assert model[1].out_features == 6


def test_signatures_skip_the_positional_arguments_and_what_cannot_be_passed() -> None:
    def odd(shape: object, classes: object, /, *args: object, mode: str = "a", rate: float = float("inf"),
            **kw: object) -> None: ...

    assert plugins.signature_of(odd, positional=2) == {"params": [
        {"name": "mode", "required": False, "default": "a"},
        {"name": "rate", "required": False, "default": None}], "any": True}

    def load(data_dir: object, split: str = "train", *, size: int) -> None: ...

    assert plugins.signature_of(load, positional=1) == {"params": [
        {"name": "split", "required": False, "default": "train"},
        {"name": "size", "required": True, "default": None}], "any": False}
    def wide(*args: object, **kwargs: object) -> None: ...

    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    wide.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, keyword) for name in ("s", "n")]
        + [inspect.Parameter(f"p{i}", keyword, default=i) for i in range(70)])
    assert plugins.signature_of(wide, positional=2)["any"] is True  # beyond 64: not checked by name


def test_a_lazy_plugin_model_is_materialised_and_a_wrong_output_is_refused_by_name(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from torch import nn

    from worker.engine.training import run_training

    monkeypatch.setenv("PRUNESCOPE_PLUGINS", "")

    @prunescope.register_model("lazy_head", input_shape=(1, 8, 8))
    def lazy(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        frozen = nn.BatchNorm1d(16).eval()  # a plugin's choice the probe must leave as it was
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(16), frozen, nn.ReLU(), nn.LazyLinear(num_classes))

    @prunescope.register_model("with_aux", input_shape=(1, 8, 8))
    def with_aux(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        class WithAux(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fc = nn.Linear(64, num_classes)

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
                return self.fc(x.flatten(1)), None

        return WithAux()

    config = {"model": {"name": "lazy_head"}, "dataset": {"name": "synthetic"}, "training": {"epochs": 1},
              "pruning": {"target_sparsity": 0.5, "schedule": {"kind": "one_shot", "start_epoch": 0}}}
    # Lazy parameters had no shape for the pruner: "Attempted to use an uninitialized parameter".
    model = build_model({"name": "lazy_head"}, (1, 8, 8), 10)
    assert [tuple(p.shape) for p in model.parameters()] == [(16, 64), (16,), (16,), (16,), (10, 16), (10,)]
    assert model.training and not model[2].training  # the probe ran in eval mode and left each mode as it was
    summary = run_training(config, data_dir=tmp_path)
    assert summary.final_sparsity == pytest.approx(0.5, abs=0.02)
    # A (logits, aux) tuple failed deep in the loss ("cross_entropy_loss(): argument 'input' ... not tuple").
    with pytest.raises(ValueError, match=r"'with_aux' .*must return logits of shape \(N, 10\); .* returned tuple"):
        build_model({"name": "with_aux"}, (1, 8, 8), 10)

    @prunescope.register_model("always_ten", input_shape=(1, 8, 8))
    def always_ten(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))  # ignores num_classes

    with pytest.raises(ValueError, match=r"shape \(N, 3\); for one input it returned a tensor of shape \[1, 10\]"):
        build_model({"name": "always_ten"}, (1, 8, 8), 3)


def test_the_api_checks_a_plugins_layers_only_where_it_knows_them() -> None:
    # Offered layers come from build() without params; a head-first plugin's output layer is known only once it runs.
    from backend.capabilities import Offer, run_problems
    from prunescope.contract import parse_run_config

    offer = Offer(models={"p_depth": ["1.weight", "3.weight"]}, datasets=["d"])

    def problems(model: dict, pruning: dict) -> list[str]:
        config = parse_run_config({"model": model, "dataset": {"name": "d"}, "pruning": pruning})
        return [str(p["msg"]) for p in run_problems(config, offer)]

    assert problems({"name": "p_depth"}, {"target_sparsity": 0.5, "layers": {"include": ["7.weight"]}})
    assert not problems({"name": "p_depth", "params": {"depth": 3}},
                        {"target_sparsity": 0.5, "layers": {"include": ["7.weight"]}})
    assert not problems({"name": "p_depth"}, {"target_sparsity": 0.5, "granularity": "neuron",
                                              "layers": {"include": ["3.weight"]}})


def test_the_api_checks_plugin_params_against_what_the_worker_says_build_and_load_take() -> None:
    # Before, `model.params` were only tried on the worker: a typo ran the queue, then failed with a TypeError.
    from backend.capabilities import Offer, run_problems
    from prunescope.contract import parse_run_config
    from prunescope.contract.worker_api import PluginSignature

    offer = Offer(models={"p_width": [], "p_old": ["1.weight"]}, datasets=["d"],
                  model_params={"p_width": PluginSignature.model_validate(
                      {"params": [{"name": "width", "required": True}, {"name": "depth", "default": 2}]})},
                  dataset_params={"d": PluginSignature.model_validate({"params": [{"name": "n"}], "any": True})})

    def problems(model: dict, dataset: dict | None = None) -> dict[tuple, str]:
        config = parse_run_config({"model": model, "dataset": dataset or {"name": "d"},
                                   "pruning": {"target_sparsity": 0.5}})
        return {tuple(p["loc"]): str(p["msg"]) for p in run_problems(config, offer)}  # type: ignore[arg-type]

    assert problems({"name": "p_width"}) == {("body", "model", "params"): (
        "model 'p_width' needs model.params width (its build() has no default for them)")}
    assert problems({"name": "p_width", "params": {"width": 8, "depht": 3}}) == {
        ("body", "model", "params", "depht"): "model 'p_width' takes no parameter 'depht': it takes width, depth"}
    assert problems({"name": "p_width", "params": {"width": 8, "depth": 3}}) == {}  # layers checked by the worker
    assert problems({"name": "p_old", "params": {"anything": 1}}) == {}  # a worker that gave no signature
    assert problems({"name": "p_width", "params": {"width": 8}}, {"name": "d", "params": {"zz": 1}}) == {}  # **kw
    # What the worker passes itself collides whatever the signature (**kwargs, or none given): a 201, then a
    # TypeError "got multiple values for argument" on the worker.
    assert problems({"name": "p_width", "params": {"width": 8}}, {"name": "d", "params": {"data_dir": "/etc"}}) == {
        ("body", "dataset", "params", "data_dir"): "dataset.params cannot set data_dir: the worker passes load() "
                                                   "data_dir itself"}
    assert problems({"name": "p_old", "params": {"num_classes": 5}}) == {
        ("body", "model", "params", "num_classes"): "model.params cannot set num_classes: the worker passes build() "
                                                    "input_shape and num_classes itself"}


def test_a_worker_with_more_plugins_than_a_heartbeat_carries_still_beats(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    # 501 models: every heartbeat was refused (max 500), so the worker vanished from /api/workers and /api/options
    # while it still took runs from the queue.
    from prunescope.contract.worker_api import MAX_OFFERED
    from worker.heartbeat import WorkerIdentity, heartbeat_body

    source = "import prunescope\nfrom torch import nn\n" + "".join(
        f"prunescope.register_model('m{i:03d}', input_shape=(1, 2, 2))(lambda s, n: nn.Linear(4, n))\n"
        for i in range(MAX_OFFERED + 1))
    monkeypatch.setenv("PRUNESCOPE_PLUGINS", _module(tmp_path, monkeypatch, "ps_plugin_many", source))
    body = heartbeat_body(WorkerIdentity("w", "h", ["cpu"], "cpu"), None)
    assert len(body.models) == MAX_OFFERED and "m000" in body.models
    assert body.plugin_errors[0] == f"{MAX_OFFERED + 1} plugin models loaded; a heartbeat offers the first 500"


def test_a_module_that_fails_partway_withdraws_what_it_registered(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    # It was listed as failed in plugin_errors while the models it registered before the error were still offered.
    from prunescope import plugins

    source = PLUGIN_SOURCE + "\nraise RuntimeError('half-written plugin')\n"
    name = _module(tmp_path, monkeypatch, "ps_plugin_half", source)
    assert plugins.import_module(name) is False
    assert "tiny_net" not in plugins.REGISTRY.models and "tiny_data" not in plugins.REGISTRY.datasets
    assert any("half-written plugin" in error for error in plugins.plugin_errors())
