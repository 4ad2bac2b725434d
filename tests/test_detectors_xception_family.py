"""The Xception-based detectors (xception, srm, f3net) beyond their goldens: they build on the
meta device (how the loader checks a checkpoint's keys without allocating), keep the released
checkpoints' fixed tensors in the state dict, and score every row of a batch independently
(the goldens only use batches of one; SRM's cross-modal attention mixes pixels with `bmm`,
where a wrong batch axis would mix faces).
"""

from __future__ import annotations

import importlib

import pytest

torch = pytest.importorskip("torch")

NAMES = ["xception", "srm", "f3net"]
FIXED = {
    "srm": ["srm_conv0.kernel", "srm_sa.srm.kernel", "srm_conv1.kernel", "srm_conv2.kernel", "blur.weight"],
    "f3net": ["FAD_head._DCT_all", "FAD_head._DCT_all_T"] + [f"FAD_head.filters.{i}.base" for i in range(4)],
}


def build(name: str) -> torch.nn.Module:
    return importlib.import_module(f"ffaa.detectors.{name}").build("full")


def fill_fan_in(net: torch.nn.Module, skip: list[str], seed: int = 0) -> None:
    """Seeded weights with fan-in scaling (like the goldens' rule), so the logits depend clearly
    on the input; PyTorch's default init leaves two faces' logits ~1e-5 apart, too close for
    the batch check to mean anything. The fixed filters in `skip` keep their true values and
    SRM's attention gammas are 0.5 so the cross-modal attention contributes."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in net.state_dict().items():
            name = key.rsplit(".", 1)[-1]
            if key in skip or not t.is_floating_point():
                continue
            n = torch.randn(t.shape, generator=g)
            if name == "running_var":
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name == "running_mean" or name.endswith("bias"):
                t.copy_(0.05 * n)
            elif t.ndim == 1 and name.endswith("weight"):
                t.copy_(1.0 + 0.1 * n)
            elif t.ndim >= 2:
                t.copy_(n / t[0].numel() ** 0.5)
            else:
                t.fill_(0.5)


@pytest.mark.parametrize("name", NAMES)
def test_builds_on_meta_with_fixed_tensors_in_state_dict(name):
    with torch.device("meta"):
        net = build(name)
    state = net.state_dict()
    assert all(v.device.type == "meta" for v in state.values())
    for key in FIXED.get(name, []):
        assert key in state, key
    with pytest.raises(ValueError):
        importlib.import_module(f"ffaa.detectors.{name}").build("tiny")


@pytest.mark.parametrize("name", NAMES)
def test_batch_rows_equal_single_runs(name):
    torch.manual_seed(0)
    net = build(name).eval()
    fill_fan_in(net, FIXED.get(name, []))
    with torch.no_grad():
        x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
        both = net(x)
        one = torch.cat([net(x[:1]), net(x[1:])])
    assert both.shape == (2, 2)
    assert torch.max(torch.abs(both[0] - both[1])).item() > 1e-3, "two different faces should differ"
    assert torch.max(torch.abs(both - one)).item() <= 1e-5, (both, one)
