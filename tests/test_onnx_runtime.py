"""The ONNX Runtime inference backend gives the eager model's eval outputs (1e-4) and caches its sessions."""
from __future__ import annotations

import pytest
import torch

from deim.data.labels import LabelMap
from deim.engine.backends import with_backend
from deim.engine.inference import InferenceModel
from deim.models.build import build_model, build_postprocessor

pytest.importorskip("onnx", reason="onnx is not installed (pip install 'deim[export]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'deim[export]')")

from deim.models.onnx_runtime import model_fingerprint, onnx_runtime_model  # noqa: E402
from test_export import randomise_  # noqa: E402  (weights without score ties)

SIZE = 160
OVERRIDES = dict(num_classes=10, eval_spatial_size=SIZE, num_queries=60, num_top_queries=60)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("deim_dfine_n", **OVERRIDES)
    randomise_(model)
    return model.eval()


@pytest.fixture(scope="module")
def runtime(model, tmp_path_factory):
    return onnx_runtime_model(model, "deim_dfine_n", SIZE, folder=tmp_path_factory.mktemp("onnx"))


@pytest.mark.parametrize("batch", [1, 3])
def test_outputs_match_eager(model, runtime, batch):
    images = torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        want = model(images)
    got = runtime(images)
    assert got["pred_logits"].shape == want["pred_logits"].shape == (batch, 60, 10)
    assert got["pred_boxes"].shape == want["pred_boxes"].shape == (batch, 60, 4)
    assert (got["pred_boxes"] - want["pred_boxes"]).abs().max() <= 1e-4
    assert (got["pred_logits"].sigmoid() - want["pred_logits"].sigmoid()).abs().max() <= 1e-4


def test_postprocessed_detections_match(model, runtime):
    post = build_postprocessor("deim_dfine_n", **OVERRIDES)
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))
    sizes = torch.tensor([[640, 480], [SIZE, SIZE]])
    with torch.no_grad():
        want = post(model(images), sizes)
    got = post(runtime(images), sizes)
    for g, w in zip(got, want):
        assert (g["scores"] - w["scores"]).abs().max() <= 1e-4
        clear = w["scores"] > w["scores"][-1] + 1e-3  # near-ties at the top-k cut may swap places
        assert torch.equal(g["labels"][clear], w["labels"][clear])


def test_session_is_cached_and_keyed_by_weights(model, runtime, tmp_path):
    again = onnx_runtime_model(model, "deim_dfine_n", SIZE, folder=tmp_path)  # same key: no new export
    assert again.session is runtime.session and not list(tmp_path.iterdir())
    other = build_model("deim_dfine_n", **OVERRIDES)
    assert model_fingerprint(other) != model_fingerprint(model)
    assert model_fingerprint(build_model("deim_dfine_n", **{**OVERRIDES, "num_queries": 30})) != \
        model_fingerprint(build_model("deim_dfine_n", **OVERRIDES))


def test_refuses_other_sizes_targets_and_devices(runtime):
    with pytest.raises(ValueError, match=f"3, {SIZE}, {SIZE}"):
        runtime(torch.rand(1, 3, 96, 96))
    with pytest.raises(ValueError, match="inference only"):
        runtime(torch.rand(1, 3, SIZE, SIZE), targets=[{}])
    assert runtime.eval() is runtime and runtime.to("cpu") is runtime
    with pytest.raises(ValueError, match="CPU"):
        runtime.to("cuda")


def test_with_backend(model, runtime):
    im = InferenceModel(model, build_postprocessor("deim_dfine_n", **OVERRIDES), LabelMap(tuple(range(1, 11)),
                        tuple(f"c{i}" for i in range(10))), SIZE, "deim_dfine_n")
    assert with_backend(im, "eager") is im
    fast = with_backend(im, "onnxruntime")
    assert fast.model.session is runtime.session  # the cached session: nothing exported again
    assert fast.postprocessor is im.postprocessor and im.model is model
    with pytest.raises(ValueError, match="unknown backend"):
        with_backend(im, "tensorrt")
    with pytest.raises(ValueError, match="--device cpu"):
        with_backend(im, "onnxruntime", device="cuda")


def test_detector_backend(model, runtime):
    from deim.detector import Detector

    im = InferenceModel(model, build_postprocessor("deim_dfine_n", **OVERRIDES), LabelMap(tuple(range(1, 11)),
                        tuple(f"c{i}" for i in range(10))), SIZE, "deim_dfine_n")
    image = torch.rand(3, 200, 240, generator=torch.Generator().manual_seed(3))
    [want] = Detector(im, threshold=0.0)(image)
    fast = Detector(im, threshold=0.0, backend="onnxruntime")
    assert fast.inference.model.session is runtime.session and fast.backend == "onnxruntime"
    [got] = fast(image)
    assert (got.scores[:20] - want.scores[:20]).abs().max() <= 1e-4
    assert (got.boxes[:20] - want.boxes[:20]).abs().max() <= 1e-2  # pixels of a 240 px image: 1e-4 relative
