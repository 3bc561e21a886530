"""ONNX export of detector + postprocessor, checked against PyTorch with onnxruntime."""
from __future__ import annotations

import pytest
import torch

from deim.models.build import build_model, build_postprocessor
from deim.models.export import export_onnx

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install deim[export])")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install deim[export])")

SIZE = 320
OVERRIDES = dict(eval_spatial_size=SIZE, num_queries=100, num_top_queries=100)


def randomise_(model: torch.nn.Module, seed: int = 0) -> None:
    """Random weights without ties in the scores (the default init zeroes every box head)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            kept = ".lab." in key or key.endswith(("anchors", "valid_mask", "up", "reg_scale"))
            if kept or not value.is_floating_point():
                continue
            if value.dim() >= 2:
                value.copy_(torch.randn(value.shape, generator=g) / (value[0].numel() ** 0.5))
            elif key.endswith(("running_var", ".weight")):
                value.copy_(1.0 + 0.05 * torch.randn(value.shape, generator=g).abs())
            else:
                value.copy_(0.05 * torch.randn(value.shape, generator=g))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("deim_dfine_n", **OVERRIDES)
    randomise_(model)
    model.eval()
    postprocessor = build_postprocessor("deim_dfine_n", **OVERRIDES)
    keys_before = list(model.state_dict())
    path = export_onnx(model, postprocessor, tmp_path_factory.mktemp("onnx") / "deim_dfine_n.onnx",
                       image_size=SIZE, opset=17, dynamic_batch=True)
    assert list(model.state_dict()) == keys_before, "export must not convert the caller's model"
    return model, postprocessor, path


def test_graph_is_valid_with_dynamic_batch(exported):
    _, _, path = exported
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version >= 17
    names = [i.name for i in graph.graph.input]
    assert names == ["images", "orig_target_sizes"]
    assert [o.name for o in graph.graph.output] == ["labels", "boxes", "scores"]
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


@pytest.mark.parametrize("batch", [1, 2])
def test_onnxruntime_matches_pytorch(exported, batch):
    model, postprocessor, path = exported
    images = torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(batch))
    sizes = torch.tensor([[640, 480], [320, 320]][:batch], dtype=torch.int64)
    with torch.no_grad():
        reference = postprocessor(model(images), sizes)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels, boxes, scores = session.run(None, {"images": images.numpy(), "orig_target_sizes": sizes.numpy()})
    assert labels.shape == (batch, 100) and boxes.shape == (batch, 100, 4) and scores.shape == (batch, 100)
    for i, ref in enumerate(reference):
        torch.testing.assert_close(torch.from_numpy(scores[i]), ref["scores"], atol=1e-4, rtol=0)
        # every detection clear of the top-k cut-off has a twin (same label, box within 1e-3 px,
        # score within 1e-4); near-tied scores may come out in another order
        got = torch.cat([torch.from_numpy(labels[i])[:, None].double(), torch.from_numpy(boxes[i]).double(),
                         torch.from_numpy(scores[i])[:, None].double()], dim=1)
        want = torch.cat([ref["labels"][:, None].double(), ref["boxes"].double(), ref["scores"][:, None].double()], 1)
        clear = want[:, 5] > want[-1, 5] + 1e-3
        distance = (want[clear][:, None, :] - got[None, :, :]).abs().amax(-1)
        assert clear.sum() > 50 and distance.min(dim=1).values.max() < 1e-3


def test_export_refuses_coco_remapping(tmp_path):
    model = build_model("deim_dfine_n", **OVERRIDES)
    postprocessor = build_postprocessor("deim_dfine_n", remap_mscoco_category=True, **OVERRIDES)
    with pytest.raises(ValueError, match="remap_mscoco_category=False"):
        export_onnx(model, postprocessor, tmp_path / "m.onnx", image_size=SIZE)
