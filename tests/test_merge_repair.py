"""REPAIR: rescaling the units of a merged model to the interpolated statistics of its endpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latentalign.merge.architectures import MLP, VGGLike
from latentalign.merge.merging import merge
from latentalign.merge.repair import repair

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _unit_stats(model: nn.Module, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (population) std of every unit of the module ``name`` over the batch (and positions)."""
    seen: list[torch.Tensor] = []
    module = dict(model.named_modules())[name]
    handle = module.register_forward_hook(lambda _m, _a, out: seen.append(out.detach()))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    out = seen[0].movedim(1, -1) if out_is_conv(module) else seen[0]
    flat = out.reshape(-1, out.shape[-1]).double()
    return flat.mean(0), flat.std(0, unbiased=False)


def out_is_conv(module: nn.Module) -> bool:
    return isinstance(module, (nn.Conv2d, nn.BatchNorm2d))


def _target(models, weights, name, x):
    stats = [_unit_stats(m, name, x) for m in models]
    mean = sum(w * s[0] for w, s in zip(weights, stats))
    std = sum(w * s[1] for w, s in zip(weights, stats))
    return mean, std


def test_repair_gives_every_hidden_unit_of_a_merged_mlp_the_interpolated_statistics():
    torch.manual_seed(0)
    # two independent networks: their hidden units are unrelated, so averaging them shrinks the variance
    a, b = MLP(12, [32, 32], 4).eval(), MLP(12, [32, 32], 4).eval()
    x = torch.randn(400, 12)
    weights = [0.7, 0.3]
    merged = merge([a, b], weights=weights)
    repaired = repair(merged, [a, b], [x[:150], (x[150:], torch.zeros(250))], weights=weights)
    for name in ("layers.0", "layers.1"):
        goal_mean, goal_std = _target([a, b], weights, name, x)
        before_mean, before_std = _unit_stats(merged, name, x)
        after_mean, after_std = _unit_stats(repaired, name, x)
        assert float((before_std / goal_std).mean()) < 0.95  # variance collapse before
        torch.testing.assert_close(after_mean, goal_mean, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(after_std, goal_std, atol=1e-4, rtol=1e-4)
    # the output layer is not rescaled, and the inputs are untouched
    torch.testing.assert_close(repaired.layers[2].weight, merged.layers[2].weight)
    assert not torch.equal(repaired.layers[0].weight, merged.layers[0].weight)
    torch.testing.assert_close(merge([a, b], weights=weights).layers[0].weight, merged.layers[0].weight)


def test_repair_at_an_endpoint_leaves_that_endpoint_unchanged():
    torch.manual_seed(1)
    a, b = MLP(6, [10], 3).eval(), MLP(6, [10], 3).eval()
    x = torch.randn(200, 6)
    repaired = repair(a, [a, b], x, weights=[1.0, 0.0])
    torch.testing.assert_close(repaired(x), a(x), atol=1e-4, rtol=1e-4)


def test_repair_rescales_batch_norm_outputs_of_a_cnn_by_default():
    torch.manual_seed(2)
    a, b = VGGLike(1, [4, 6], 3), VGGLike(1, [4, 6], 3)
    with torch.no_grad():
        for model in (a, b):
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.weight.uniform_(0.5, 2.0)
                    module.bias.normal_()
                    module.running_var.uniform_(0.5, 2.0)
    a.eval(), b.eval()
    x = torch.randn(64, 1, 8, 8)
    merged = merge([a, b])
    repaired = repair(merged, [a, b], x.split(16), eps=0.0)
    for name in ("blocks.0.bn", "blocks.1.bn"):
        goal_mean, goal_std = _target([a, b], [0.5, 0.5], name, x)
        after_mean, after_std = _unit_stats(repaired, name, x)
        torch.testing.assert_close(after_mean, goal_mean, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(after_std, goal_std, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(repaired.blocks[0].conv.weight, merged.blocks[0].conv.weight)  # only BN changed


def test_repair_errors_name_the_argument():
    a, b = MLP(4, [5], 2), MLP(4, [5], 2)
    x = torch.randn(8, 4)
    with pytest.raises(ValueError, match="endpoints must be a non-empty list"):
        repair(a, [], x)
    with pytest.raises(ValueError, match=r"weights must be 2 finite non-negative numbers .* received \[1.0\]"):
        repair(a, [a, b], x, weights=[1.0])
    with pytest.raises(ValueError, match="layers names 'nope', which is not a module"):
        repair(a, [a, b], x, layers=["nope"])
    no_bias = nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"layer '0' \(Linear\) cannot be rescaled"):
        repair(no_bias, [no_bias, no_bias], x)
    with pytest.raises(ValueError, match="loader yielded no batch"):
        repair(a, [a, b], [])


class _Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.head = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc(torch.relu(self.fc(x))))


def test_repair_refuses_a_layer_that_runs_twice_and_other_architectures():
    model = _Twice()
    with pytest.raises(ValueError, match="layer 'fc' runs more than once in a forward pass"):
        repair(model, [model, model], torch.randn(8, 3))
    with pytest.raises(ValueError, match="model and endpoints\\[1\\] have different architectures"):
        repair(MLP(4, [5], 2), [MLP(4, [5], 2), MLP(4, [6], 2)], torch.randn(8, 4))
