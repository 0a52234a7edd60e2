"""BSQ-ViT's GAN side: the PatchGAN spec and its size rules, the discriminator's shapes, MLX vs
torch_ref parity of scores, features and gradients (weight norm on and off), the hinge losses
(known values and parity), and the clear error for a mel below the minimum size."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import mlx.core as mx
import mlx.nn as nn

from convert.parity import build_pair, compare
from mlx_speech.errors import AudioError, SpecError
from mlx_speech.models.bsq_vit.gan_spec import PatchGANSpec
from mlx_speech.weights.core import flatten_tree

torch = pytest.importorskip("torch")

CL = (0, 2, 3, 1)  # torch (B, C, H, W) -> MLX (B, H, W, C)
TINY = PatchGANSpec.from_preset("tiny")
SPECS = {
    "tiny": TINY,
    "tiny-no-wn": TINY.replace(weight_norm=False),
    "k3-capped": PatchGANSpec(channels=4, layers=3, kernel=3, max_channels=8, slope=0.1),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mel(B=2, T=50, n_mels=40, seed=0):
    """A mel in the tokenizer's [-1, 1] scale."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (B, T, n_mels)).astype(np.float32)


def _models():
    from mlx_speech.train.bsq_vit_discriminator import PatchGANDiscriminator as M
    from torch_ref.train.bsq_vit_discriminator import PatchGANDiscriminator as T

    return M, T


# --- spec ---------------------------------------------------------------------------------------
def test_spec_presets_plan_and_minimum():
    d = PatchGANSpec.from_preset("default")
    assert (d.channels, d.layers, d.kernel, d.max_channels, d.weight_norm, d.slope) == (64, 3, 4, 512, True, 0.2)
    # pix2pix's n_layers=3 stack: three stride-2 convs, one stride-1, the score conv.
    assert d.conv_plan() == [(1, 64, 2), (64, 128, 2), (128, 256, 2), (256, 512, 1), (512, 1, 1)]
    assert d.min_input_size() == 24 and d.map_sizes(24) == [12, 6, 3, 2, 1] and d.map_sizes(23)[-1] == 0
    assert d.output_size(80) == 8 and d.output_size(256) == 30
    assert TINY.conv_plan() == [(1, 8, 2), (8, 16, 2), (16, 32, 1), (32, 1, 1)] and TINY.min_input_size() == 12
    capped = PatchGANSpec(channels=64, layers=5, max_channels=256)
    assert [c for _, c, _ in capped.conv_plan()] == [64, 128, 256, 256, 256, 256, 1]
    for n in (5, 12, 24, 31, 100):  # the minimum is the first size whose maps are all >= 1
        s = PatchGANSpec(layers=n % 4 + 1, kernel=n % 3 + 2)
        low = s.min_input_size()
        assert min(s.map_sizes(low)) >= 1 and (low == 1 or min(s.map_sizes(low - 1)) < 1)
    assert PatchGANSpec.presets() == ["default", "tiny"]


@pytest.mark.parametrize("bad, field", [
    ("channels: 0", "channels"), ("layers: 0", "layers"), ("kernel: 1", "kernel"),
    ("channels: 64\nmax_channels: 32", "max_channels"), ("slope: 1.0", "slope"),
    ("slope: -0.1", "slope"), ("chanels: 8", "channels"), ("weight_norm: 1", "weight_norm"),
])
def test_spec_rejects_bad_values(bad, field):
    with pytest.raises(SpecError, match=field):
        PatchGANSpec.from_yaml(bad)


def test_spec_imports_no_framework():
    code = ("import sys, mlx_speech.models.bsq_vit.gan_spec\n"
            "print(','.join(m for m in ('mlx', 'mlx.core', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


# --- shapes and bad input -----------------------------------------------------------------------
@pytest.mark.parametrize("T, n_mels", [(24, 24), (100, 80), (37, 128), (256, 25)])
def test_shapes_default(T, n_mels):
    M, _ = _models()
    spec = PatchGANSpec.from_preset("default")
    mx.random.seed(0)
    scores, feats = M(spec)(mx.array(_mel(T=T, n_mels=n_mels)))
    hs, ws, plan = spec.map_sizes(T), spec.map_sizes(n_mels), spec.conv_plan()
    assert tuple(scores.shape) == (2, spec.output_size(T), spec.output_size(n_mels)) == (2, hs[-1], ws[-1])
    assert [tuple(f.shape) for f in feats] == [(2, h, w, c) for h, w, (_, c, _) in zip(hs, ws, plan[:-1])]
    assert np.isfinite(np.array(scores)).all()


def test_too_small_or_misshapen_input_is_one_clear_error():
    M, T = _models()
    m, t = M(TINY), T(TINY)
    for shape in ((1, 11, 40), (1, 40, 11)):
        with pytest.raises(ValueError, match=r"needs T >= 12 and n_mels >= 12") as e:
            m(mx.zeros(shape))
        assert isinstance(e.value, AudioError)
        with pytest.raises(AudioError, match=r"needs T >= 12 and n_mels >= 12"):
            t(torch.zeros(shape))
    with pytest.raises(AudioError, match=r"\(B, T, n_mels\)"):
        m(mx.zeros((1, 1, 40, 40)))
    with pytest.raises(AudioError, match=r"\(B, T, n_mels\)"):
        t(torch.zeros((40, 40)))
    assert tuple(m(mx.zeros((1, 12, 12)))[0].shape) == (1, 1, 1)  # the minimum itself works
    with pytest.raises(AudioError, match=r"T >= 24"):
        M()(mx.zeros((1, 23, 80)))


# --- MLX vs torch_ref ---------------------------------------------------------------------------
@pytest.fixture(scope="module", params=list(SPECS), ids=list(SPECS))
def pair(request):
    M, T = _models()
    return build_pair(M, T, spec=SPECS[request.param])


@pytest.mark.parametrize("T, n_mels", [(50, 40), (64, 80), (13, 17)])
def test_parity_scores_features_and_keys(pair, T, n_mels):
    m, t = pair
    spec = m.spec
    state = t.state_dict()
    assert set(flatten_tree(m.parameters())) == set(state)
    n = spec.layers + 1
    assert {k.rsplit(".", 1)[0] for k in state} == {f"convs.{i}" for i in range(n)} | {"out"}
    leaf = "weight_v" if spec.weight_norm else "weight"
    assert tuple(state[f"convs.0.{leaf}"].shape) == (spec.channels, 1, spec.kernel, spec.kernel)
    assert ("convs.0.weight_g" in state) == spec.weight_norm and "out.bias" in state
    x = _mel(T=T, n_mels=n_mels, seed=T)
    sm, fm = m(mx.array(x))
    with torch.no_grad():
        st, ft = t(torch.from_numpy(x))
    assert tuple(sm.shape) == tuple(st.shape) == (2, spec.output_size(T), spec.output_size(n_mels))
    compare(sm, st, atol=1e-5, name="scores")
    assert float(np.array(sm).std()) > 1e-4
    assert len(fm) == len(ft) == n
    for i, (a, b) in enumerate(zip(fm, ft)):
        compare(a, b, atol=1e-5, name=f"feature {i}", transpose_torch=CL)


def test_rows_do_not_mix(pair):
    """No batch statistics: a mel's scores are the same alone and beside others."""
    m, _ = pair
    x = _mel(B=3, T=40, n_mels=32, seed=9)
    both = np.array(m(mx.array(x))[0])
    compare(np.array(m(mx.array(x[1:2]))[0]), both[1:2], atol=1e-6, name="row 1 alone")


def test_discriminator_gradients_parity(pair):
    """The hinge discriminator loss on real + fake in one forward: gradients w.r.t. every
    discriminator parameter are finite, non-zero and equal between the frameworks; the generator
    loss reaches the fake mel."""
    import mlx_speech.train.losses as L
    import torch_ref.train.losses as TL

    m, t = pair
    real, fake = _mel(T=48, n_mels=40, seed=1), 0.5 * _mel(T=48, n_mels=40, seed=2)

    def d_loss(model):
        s, _ = model(mx.array(np.concatenate([real, fake])))
        return L.hinge_discriminator_loss(s[:2], s[2:])[0]

    loss, grads = nn.value_and_grad(m, d_loss)(m)
    t.zero_grad()
    s, _ = t(torch.from_numpy(np.concatenate([real, fake])))
    lt = TL.hinge_discriminator_loss(s[:2], s[2:])[0]
    lt.backward()
    assert abs(float(loss) - lt.item()) <= 1e-5 * lt.item()
    tg = {k: v.grad for k, v in t.named_parameters()}
    flat = flatten_tree(grads)
    assert set(flat) == set(tg)
    for k, g in flat.items():
        g_np = np.array(g)
        assert np.isfinite(g_np).all() and np.abs(g_np).max() > 0, k
        ref = tg[k].permute(*CL) if tg[k].ndim == 4 else tg[k]
        compare(g_np, ref, atol=1e-4 * float(tg[k].abs().max()), name=f"grad {k}")

    def g_loss(x):
        return L.hinge_generator_loss(m(x)[0])

    gx = mx.grad(g_loss)(mx.array(fake))
    assert np.isfinite(np.array(gx)).all() and float(mx.abs(gx).max()) > 0


# --- hinge losses -------------------------------------------------------------------------------
def test_hinge_losses_known_values_and_parity():
    import mlx_speech.train.losses as L
    import torch_ref.train.losses as TL

    real, fake = np.array([2.0, 0.5, -1.0], np.float32), np.array([[-2.0, 0.0], [0.5, 3.0]], np.float32)
    # relu(1 - real) = [0, .5, 2] -> 5/6; relu(1 + fake) = [0, 1, 1.5, 4] -> 1.625; -mean(fake) = -0.375.
    for lib, wrap in ((L, mx.array), (TL, torch.from_numpy)):
        loss, parts = lib.hinge_discriminator_loss(wrap(real), wrap(fake))
        assert set(parts) == {"d_real", "d_fake"}
        assert abs(float(parts["d_real"]) - 5 / 6) < 1e-6 and abs(float(parts["d_fake"]) - 1.625) < 1e-6
        assert abs(float(loss) - (5 / 6 + 1.625)) < 1e-6
        assert abs(float(lib.hinge_generator_loss(wrap(fake))) + 0.375) < 1e-6
    r = np.random.default_rng(3)
    a, b = r.standard_normal((2, 7, 5)).astype(np.float32), r.standard_normal((3, 7, 5)).astype(np.float32)
    lm, pm = L.hinge_discriminator_loss(mx.array(a), mx.array(b))
    lt, pt = TL.hinge_discriminator_loss(torch.from_numpy(a), torch.from_numpy(b))
    for x, y in ((lm, lt), (pm["d_real"], pt["d_real"]), (pm["d_fake"], pt["d_fake"]),
                 (L.hinge_generator_loss(mx.array(b)), TL.hinge_generator_loss(torch.from_numpy(b)))):
        assert abs(float(x) - float(y)) <= 1e-6 * max(1.0, abs(float(y)))
    # Scores beyond the margins give no discriminator loss.
    assert float(L.hinge_discriminator_loss(mx.array([1.0, 3.0]), mx.array([-1.0, -5.0]))[0]) == 0.0


def test_hinge_losses_refuse_lists_and_empty_maps():
    import mlx_speech.train.losses as L
    import torch_ref.train.losses as TL

    with pytest.raises(TypeError, match="one score array"):
        L.hinge_discriminator_loss([mx.ones(3)], [mx.ones(3)])
    with pytest.raises(TypeError, match="one score tensor"):
        TL.hinge_generator_loss([torch.ones(3)])
    with pytest.raises(SpecError, match="empty"):
        L.hinge_generator_loss(mx.zeros((2, 0)))
    with pytest.raises(SpecError, match="empty"):
        TL.hinge_discriminator_loss(torch.ones(2), torch.zeros(0))
