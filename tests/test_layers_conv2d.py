"""Conv2d (MLX) and its torch_ref twin: against ``F.conv2d``, weight norm against torch's own,
the fold, the declared layout through the weights core, and config errors."""

import mlx.core as mx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convert.parity import compare, copy_mlx_to_torch
from mlx_speech.errors import SpecError
from mlx_speech.layers.conv2d import Conv2d
from mlx_speech.weights.core import param_kinds
from torch_ref.layers.conv2d import Conv2d as TConv2d

CASES = [  # (in, out, kernel, stride, padding, groups)
    (2, 8, (3, 9), (1, 2), (1, 4), 1),
    (4, 6, (5, 1), (3, 1), (2, 0), 2),
    (3, 3, 3, 1, 1, 3),
]


@pytest.mark.parametrize("case", CASES, ids=["mrd", "mpd-grouped", "depthwise"])
@pytest.mark.parametrize("weight_norm", [False, True])
def test_matches_torch(case, weight_norm):
    c_in, c_out, k, s, p, g = case
    mx.random.seed(0)
    kw = dict(in_channels=c_in, out_channels=c_out, kernel_size=k, stride=s, padding=p, groups=g,
              weight_norm=weight_norm)
    m, t = Conv2d(**kw), TConv2d(**kw)
    copy_mlx_to_torch(m, t)
    assert param_kinds(m) == param_kinds(t)
    x = np.random.default_rng(1).standard_normal((2, c_in, 17, 23)).astype(np.float32)
    with torch.no_grad():
        y = t(torch.from_numpy(x))
        ref = F.conv2d(torch.from_numpy(x), t.effective_weight(), t.bias, stride=t.stride, padding=t.padding,
                       groups=g)
    out = m(mx.array(x.transpose(0, 2, 3, 1)))
    assert tuple(out.shape[1:3]) == m.output_shape(17, 23) == tuple(y.shape[2:])
    compare(y, ref, atol=1e-6)
    compare(out, y, atol=1e-5, transpose_torch=(0, 2, 3, 1))
    if weight_norm:  # torch's own weight norm over every dim but 0 gives the same weight
        v, gain = t.weight_v.detach(), t.weight_g.detach()
        want = torch._weight_norm(v, gain, 0)
        compare(t.effective_weight().detach(), want, atol=1e-7)
        m.remove_weight_norm()
        t.remove_weight_norm()
        assert "weight" in m and "weight_v" not in m and not m.weight_norm
        compare(m(mx.array(x.transpose(0, 2, 3, 1))), y, atol=1e-5, transpose_torch=(0, 2, 3, 1))
        with torch.no_grad():
            compare(t(torch.from_numpy(x)), y, atol=1e-6)


def test_errors():
    for kw in ({"kernel_size": (3, 0)}, {"stride": 0}, {"padding": -1}, {"kernel_size": (1, 2, 3)},
               {"groups": 3}, {"kernel_size": True}):
        args = {"in_channels": 4, "out_channels": 4, "kernel_size": 3, **kw}
        for cls in (Conv2d, TConv2d):
            with pytest.raises(SpecError):
                cls(**args)
    conv = Conv2d(in_channels=2, out_channels=2, kernel_size=(5, 1))
    with pytest.raises(ValueError, match="channels-last"):
        conv(mx.zeros((1, 2, 8, 8)))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        conv(mx.zeros((1, 4, 8, 2)))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        TConv2d(in_channels=2, out_channels=2, kernel_size=(5, 1))(torch.zeros(1, 2, 4, 8))
