"""I3D and EfficientNet-B4 beyond the goldens: rows of a batch do not influence each other (so
batching clips or faces gives each one the score it gets alone), and I3D refuses clips its
fixed pooling kernel cannot take, instead of returning several outputs per clip."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ffaa.detectors import efficientnetb4, i3d  # noqa: E402

BATCH_ATOL = 1e-5


def assert_rows_independent(net: torch.nn.Module, x: torch.Tensor) -> None:
    """net(x) row by row equals net on each row alone; the two rows must also differ, or the
    check would not see rows being mixed up."""
    with torch.inference_mode():
        together = net(x)
        alone = torch.cat([net(x[:1]), net(x[1:])])
    assert together.shape == alone.shape
    assert torch.allclose(together, alone, rtol=0, atol=BATCH_ATOL), (together, alone)
    assert not torch.allclose(together[0], together[1], rtol=0, atol=1e-6), "both rows gave the same output"


def lively(net: torch.nn.Module, gain: float) -> torch.nn.Module:
    """Random weights that keep the signal alive: with PyTorch's default init (and fresh
    BatchNorm statistics) EfficientNet's SE/swish stack gives every input nearly the same
    output. Fan-in-scaled normal weights, BN scales near 1 and non-trivial running statistics."""
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand_like(t))
            elif t.ndim >= 2:
                t.copy_(torch.randn_like(t) * gain / t[0].numel() ** 0.5)
            elif name.endswith("weight"):
                t.copy_(1 + 0.1 * torch.randn_like(t))
            else:  # biases, running means
                t.copy_(0.05 * torch.randn_like(t))
    return net.eval()


def test_efficientnetb4_batch_rows_independent():
    torch.manual_seed(0)
    net = lively(efficientnetb4.build(), gain=1.35)
    x = torch.randn(2, 3, 256, 256)
    assert_rows_independent(net, x)
    with torch.inference_mode():
        assert net(x).shape == (2, 2)


def test_i3d_batch_rows_independent():
    # The same code with a shorter, smaller clip (head pool [2, 2, 2]) to keep the test fast.
    torch.manual_seed(0)
    net = i3d.I3DDetector(num_frames=4, crop_size=64).eval()
    x = torch.randn(2, 4, 3, 64, 64)
    assert_rows_independent(net, x)
    with torch.inference_mode():
        assert net(x).shape == (2, 1)


@pytest.mark.parametrize("shape", [
    (1, 8, 3, 224, 224),  # too few frames
    (1, 16, 3, 256, 256),  # wrong size
    (1, 3, 16, 224, 224),  # channels before frames
    (16, 3, 224, 224),  # a clip without its batch dimension
])
def test_i3d_refuses_wrong_clip(shape):
    net = i3d.build().eval()
    with pytest.raises(ValueError, match=r"I3D takes clips of shape \[B, 16, 3, 224, 224\]"):
        with torch.inference_mode():
            net(torch.zeros(shape))


def test_build_on_meta_device():
    with torch.device("meta"):
        nets = [i3d.build(), efficientnetb4.build()]
    assert all(p.is_meta for net in nets for p in net.parameters())
