"""DAC's GAN side: the MPD + MSD + MRD discriminator and the DAC losses, MLX vs torch_ref parity,
an independent torch rebuild of Descript's discriminator (its module tree and audiotools' STFT,
loaded through the upstream key map), DAC's mel loss against a librosa re-implementation of
audiotools', the feature-matching rule, gradients, shapes at 16 kHz and 44.1 kHz, bad input.

descript-audio-codec and audiotools do not install here, so the upstream tier rebuilds their
definitions from torch parts (``_UpstreamDiscriminator``) instead of importing them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from convert.parity import build_pair, compare
from mlx_speech.errors import AudioError, CheckpointError, SpecError
from mlx_speech.models.dac.gan_spec import DACDiscriminatorSpec, band_bins, discriminator_state_from_upstream
from mlx_speech.weights.core import flatten_tree

torch = pytest.importorskip("torch")
F = torch.nn.functional

# Every branch kind (MPD, MSD at half rate, MRD), narrow channels, 16 kHz.
SMALL = DACDiscriminatorSpec(rates=[2], periods=[2, 3, 5], fft_sizes=[512, 256], sample_rate=16000,
                             mpd_channels=[4, 8, 16, 16], msd_channels=[4, 8, 16, 16, 16, 16],
                             msd_groups=[1, 4, 4, 4, 4, 1], mrd_channels=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _wav(B=2, T=4001, seed=0, scale=0.3):
    return (scale * np.random.default_rng(seed).standard_normal((B, T))).astype(np.float32)


def _torch_perm(t):
    return (0, 2, 3, 1) if t.ndim == 4 else (0, 2, 1)


def _close(a, b, name, rel=1e-4):
    """``|a - b| <= rel * max|b|``: relative to the map's scale (elementwise relative error is
    meaningless where a map crosses zero)."""
    b_np = b.detach().double().numpy()
    compare(a, b, atol=rel * max(float(np.abs(b_np).max()), 1e-12), name=name,
            transpose_torch=_torch_perm(b) if b.ndim > 2 else None)


# --- spec ---------------------------------------------------------------------------------------
def test_spec_bands_presets_and_errors():
    spec = DACDiscriminatorSpec.from_preset("dac_44khz")
    assert spec.rates == [] and spec.periods == [2, 3, 5, 7, 11] and spec.fft_sizes == [2048, 1024, 512]
    # Descript truncates fraction * (n_fft // 2 + 1): 0.1 * 1025 = 102.5 -> 102, 1.0 -> 1025.
    assert spec.band_bins(2048) == [(0, 102), (102, 256), (256, 512), (512, 768), (768, 1025)]
    assert band_bins(spec.bands, 512) == [(0, 25), (25, 64), (64, 128), (128, 192), (192, 257)]
    assert DACDiscriminatorSpec.from_preset("dac_16khz").sample_rate == 16000
    assert DACDiscriminatorSpec.from_yaml("rates: [1, 2]\nbands: [[0.0, 0.5], [0.5, 1.0]]").rates == [1, 2]
    for bad in ("bands: [[0.5, 0.2]]", "msd_groups: [1, 3, 4, 4, 4, 1]", "fft_sizes: [4]",
                "periods: []\nfft_sizes: []", "bands: [[0.0, 0.001]]", "mpd_channel: [1, 2]"):
        with pytest.raises(SpecError):
            DACDiscriminatorSpec.from_yaml(bad)


# --- shapes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("sr", [16000, 44100])
def test_shapes_one_second(sr):
    from mlx_speech.train.dac_discriminators import DACDiscriminator

    spec = DACDiscriminatorSpec(sample_rate=sr)
    mx.random.seed(0)
    scores, feats = DACDiscriminator(spec)(mx.array(_wav(B=1, T=sr)))
    assert len(scores) == len(feats) == 5 + 3
    for p, s, f in zip(spec.periods, scores, feats):
        rows = (sr + p - sr % p) // p  # Descript pads a whole period when p divides T
        for _ in range(4):
            rows = (rows - 1) // 3 + 1
        assert len(f) == 6 and tuple(f[-2].shape) == (1, rows, p, 1024) and tuple(s.shape) == (1, rows * p)
    for n_fft, s, f in zip(spec.fft_sizes, scores[5:], feats[5:]):
        frames = math.ceil(sr / (n_fft // 4))
        widths = [hi - lo for lo, hi in spec.band_bins(n_fft)]
        for _ in range(3):
            widths = [(w - 1) // 2 + 1 for w in widths]
        assert len(f) == 5 * 5 + 1
        assert [tuple(f[5 * b + 4].shape) for b in range(5)] == [(1, frames, w, 32) for w in widths]
        assert tuple(f[-1].shape) == (1, frames, sum(widths), 1) and tuple(s.shape) == (1, frames * sum(widths))
    assert all(np.isfinite(np.array(s)).all() for s in scores)


# --- MLX vs torch_ref ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair():
    from mlx_speech.train.dac_discriminators import DACDiscriminator as M
    from torch_ref.train.dac_discriminators import DACDiscriminator as T

    return build_pair(M, T, spec=SMALL)


@pytest.mark.parametrize("T", [4001, 3840])  # 3840: a multiple of every period and hop
def test_discriminator_parity_and_keys(pair, T):
    m, t = pair
    assert set(flatten_tree(m.parameters())) == set(t.state_dict())
    keys = t.state_dict()
    assert tuple(keys["discriminators.0.convs.0.weight_v"].shape) == (4, 1, 5, 1)  # Descript's WNConv2d
    assert tuple(keys["discriminators.0.convs.0.weight_g"].shape) == (4, 1, 1, 1)
    assert tuple(keys["discriminators.3.convs.1.weight_v"].shape) == (8, 1, 41)  # MSD, groups 4
    assert tuple(keys["discriminators.4.band_convs.4.1.weight_v"].shape) == (8, 8, 3, 9)
    x = _wav(T=T)
    x[1] += 0.2  # a DC offset the preprocessing removes
    sm, fm = m(mx.array(x))
    with torch.no_grad():
        st, ft = t(torch.from_numpy(x))
    assert len(sm) == len(fm) == 3 + 1 + 2
    for i, (a, b) in enumerate(zip(sm, st)):
        _close(a, b, f"score{i}")
        assert float(np.array(a).std()) > 1e-5
    for i, (la, lb) in enumerate(zip(fm, ft)):
        assert len(la) == len(lb) == (5 if i < 3 else 7 if i == 3 else 26)
        for j, (a, b) in enumerate(zip(la, lb)):
            _close(a, b, f"feat{i}.{j}")


def test_preprocess_and_resample():
    from mlx_speech.train import dac_discriminators as M
    from torch_ref.train import dac_discriminators as T

    x = _wav(T=3001) + 0.5
    y = np.array(M.preprocess(mx.array(x)))
    assert np.allclose(np.abs(y).max(axis=1), 0.8, atol=1e-6) and np.allclose(y.mean(axis=1), 0, atol=1e-6)
    compare(y, T.preprocess(torch.from_numpy(x)), atol=1e-6)
    for old, new in ((16000, 8000), (44100, 14700), (24000, 16000)):
        a = M.resample_frac(mx.array(x), old, new)
        b = T.resample_frac(torch.from_numpy(x), old, new)
        assert tuple(a.shape) == (2, 3001 * new // old)
        compare(a, b, atol=2e-6, name=f"resample {old}->{new}")
        compare(b, _julius_resample(torch.from_numpy(x), old, new), atol=2e-6, name="vs julius' formula")
    ones = np.ones((1, 500), np.float32)
    assert np.allclose(np.array(M.resample_frac(mx.array(ones), 3, 2)), 1.0, atol=1e-6)


# --- Descript's definition, rebuilt from torch parts --------------------------------------------
def _julius_resample(x, old_sr, new_sr, zeros=24, rolloff=0.945):
    """julius.resample_frac written out in float32 torch, the way julius computes it."""
    g = math.gcd(old_sr, new_sr)
    old, new = old_sr // g, new_sr // g
    sr = min(old, new) * rolloff
    width = math.ceil(zeros * old / sr)
    idx = torch.arange(-width, width + old).float()
    kernels = []
    for i in range(new):
        t = ((-i / new + idx / old) * sr).clamp(-zeros, zeros) * math.pi
        k = torch.where(t == 0, torch.ones(()), torch.sin(t) / t) * torch.cos(t / zeros / 2) ** 2
        kernels.append(k / k.sum())
    B, L = x.shape
    y = F.conv1d(F.pad(x[:, None], (width, width + old), mode="replicate"), torch.stack(kernels)[:, None],
                 stride=old)
    return y.transpose(1, 2).reshape(B, -1)[:, :int(new * L / old)]


class _UpstreamDiscriminator(torch.nn.Module):
    """Descript's ``Discriminator`` (dac/model/discriminator.py) from its definition: activated
    convs are ``Sequential(weight_norm(conv), LeakyReLU(0.1))``, STFTs are audiotools'
    (``match_stride=True``: reflect pre-padding, ``torch.stft(center=True)``, 2 + 2 frames
    dropped, scipy's periodic Hann), forward returns one ``fmap`` list per sub-discriminator."""

    def __init__(self, spec: DACDiscriminatorSpec):
        super().__init__()
        wn = torch.nn.utils.parametrizations.weight_norm
        nn_ = torch.nn

        def act(conv):
            return nn_.Sequential(wn(conv), nn_.LeakyReLU(0.1))

        self.spec, discs = spec, []
        for _ in spec.periods:
            c = [1] + spec.mpd_channels
            d = nn_.Module()
            d.convs = nn_.ModuleList(act(nn_.Conv2d(c[i], c[i + 1], (5, 1), (3, 1) if i < len(c) - 2 else 1,
                                                    padding=(2, 0))) for i in range(len(c) - 1))
            d.conv_post = wn(nn_.Conv2d(c[-1], 1, (3, 1), padding=(1, 0)))
            discs.append(d)
        for _ in spec.rates:
            c, g = [1] + spec.msd_channels, spec.msd_groups
            d = nn_.Module()
            d.convs = nn_.ModuleList(act(nn_.Conv1d(c[i], c[i + 1], k, s, groups=g[i], padding=k // 2))
                                     for i, (k, s) in enumerate(zip((15, 41, 41, 41, 41, 5), (1, 4, 4, 4, 4, 1))))
            d.conv_post = wn(nn_.Conv1d(c[-1], 1, 3, 1, padding=1))
            discs.append(d)
        ch = spec.mrd_channels
        for _ in spec.fft_sizes:
            d = nn_.Module()
            d.band_convs = nn_.ModuleList(nn_.ModuleList(
                [act(nn_.Conv2d(2, ch, (3, 9), (1, 1), padding=(1, 4)))]
                + [act(nn_.Conv2d(ch, ch, (3, 9), (1, 2), padding=(1, 4))) for _ in range(3)]
                + [act(nn_.Conv2d(ch, ch, (3, 3), (1, 1), padding=(1, 1)))]) for _ in spec.bands)
            d.conv_post = wn(nn_.Conv2d(ch, 1, (3, 3), (1, 1), padding=(1, 1)))
            discs.append(d)
        self.discriminators = nn_.ModuleList(discs)

    @staticmethod
    def _run(layers, x, fmap):
        for layer in layers:
            x = layer(x)
            fmap.append(x)
        return x

    def forward(self, x):  # x (B, 1, T), as Descript's
        from einops import rearrange
        from scipy.signal import get_window

        x = x - x.mean(dim=-1, keepdims=True)
        x = 0.8 * x / (x.abs().max(dim=-1, keepdim=True)[0] + 1e-9)
        spec, out, i = self.spec, [], 0
        for p in spec.periods:
            d, fmap = self.discriminators[i], []
            y = F.pad(x, (0, p - x.shape[-1] % p), mode="reflect")
            y = self._run(d.convs, rearrange(y, "b c (l p) -> b c l p", p=p), fmap)
            fmap.append(d.conv_post(y))
            out.append(fmap)
            i += 1
        for r in spec.rates:
            d, fmap = self.discriminators[i], []
            y = _julius_resample(x[:, 0], spec.sample_rate, spec.sample_rate // r)[:, None]
            fmap.append(d.conv_post(self._run(d.convs, y, fmap)))
            out.append(fmap)
            i += 1
        for n_fft in spec.fft_sizes:
            d, fmap, hop = self.discriminators[i], [], n_fft // 4
            length = x.shape[-1]
            right, pad = math.ceil(length / hop) * hop - length, (n_fft - hop) // 2
            y = F.pad(x, (pad, pad + right), mode="reflect")
            window = torch.from_numpy(get_window("hann", n_fft)).float()
            s = torch.stft(y.reshape(-1, y.shape[-1]), n_fft=n_fft, hop_length=hop, window=window,
                           return_complex=True, center=True)[..., 2:-2]
            s = rearrange(torch.view_as_real(s), "b f t c -> b c t f")
            bins = [(int(lo * (n_fft // 2 + 1)), int(hi * (n_fft // 2 + 1))) for lo, hi in spec.bands]
            bands = [self._run(stack, s[..., lo:hi], fmap) for (lo, hi), stack in zip(bins, d.band_convs)]
            fmap.append(d.conv_post(torch.cat(bands, dim=-1)))
            out.append(fmap)
            i += 1
        return out


def test_upstream_definition_through_key_map():
    from mlx_speech.train.dac_discriminators import DACDiscriminator as M
    from mlx_speech.weights.mlx import load_torch_state_into_mlx
    from torch_ref.train.dac_discriminators import DACDiscriminator as T
    from torch_ref.weights import load_torch_state

    torch.manual_seed(3)
    up = _UpstreamDiscriminator(SMALL).eval()
    state = up.state_dict()
    assert "discriminators.0.convs.0.0.parametrizations.weight.original0" in state
    assert "discriminators.4.band_convs.2.3.0.parametrizations.weight.original1" in state
    ours = discriminator_state_from_upstream(state)
    t = load_torch_state(T(SMALL), ours, where="upstream")
    m = load_torch_state_into_mlx(M(SMALL), ours, where="upstream")
    for T_ in (4001, 3840):
        x = _wav(T=T_, seed=5)
        with torch.no_grad():
            ref = up(torch.from_numpy(x)[:, None])
            st, ft = t(torch.from_numpy(x))
        sm, fm = m(mx.array(x))
        for i, fmap in enumerate(ref):
            assert len(fmap) == len(ft[i]) == len(fm[i])
            compare(st[i], fmap[-1].reshape(2, -1), atol=1e-5 * float(fmap[-1].abs().max()), name=f"score{i}")
            _close(sm[i], fmap[-1].reshape(2, -1), f"mlx score{i}")
            for j, (a, b) in enumerate(zip(ft[i], fmap)):
                compare(a, b, atol=1e-5 * float(b.abs().max()), name=f"feat{i}.{j}")
                _close(fm[i][j], b, f"mlx feat{i}.{j}")

    # The pre-2.1 weight-norm names map too; anything else is refused with its name.
    old = {k.replace("parametrizations.weight.original0", "weight_g")
           .replace("parametrizations.weight.original1", "weight_v"): v for k, v in state.items()}
    assert discriminator_state_from_upstream(old).keys() == ours.keys()
    with pytest.raises(CheckpointError, match="optimizer"):
        discriminator_state_from_upstream({**old, "optimizer.step": torch.zeros(())})
    with pytest.raises(CheckpointError, match="twice"):
        discriminator_state_from_upstream({**old, **state})


# --- losses -------------------------------------------------------------------------------------
def _audiotools_mel_loss(a, b, sr):
    """audiotools' MelSpectrogramLoss with DAC's settings, in float64 numpy + librosa."""
    import librosa

    from mlx_speech.train.losses import DAC_MEL_BANDS, DAC_MEL_WINDOWS

    total = 0.0
    for win, n in zip(DAC_MEL_WINDOWS, DAC_MEL_BANDS):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns about empty filters at 2048 / 320 mels
            fb = librosa.filters.mel(sr=sr, n_fft=win, n_mels=n, fmin=0.0, fmax=None).astype(np.float64)

        def log_mel(x, win=win, fb=fb):
            mag = np.abs(librosa.stft(x.astype(np.float64), n_fft=win, hop_length=win // 4, window="hann",
                                      center=True, pad_mode="reflect"))
            return np.log10(np.maximum(np.einsum("mf,bft->bmt", fb, mag), 1e-5))

        total += np.abs(log_mel(a) - log_mel(b)).mean()
    return total


@pytest.mark.parametrize("sr", [16000, 44100])
def test_dac_mel_loss_parity_and_reference(sr):
    import mlx_speech.train.losses as M
    import torch_ref.train.losses as T

    a = _wav(T=sr // 4, seed=1)
    b = (a + 0.05 * np.random.default_rng(2).standard_normal(a.shape)).astype(np.float32)
    lm = float(M.dac_mel_loss(mx.array(a), mx.array(b), sample_rate=sr))
    lt = float(T.dac_mel_loss(torch.from_numpy(a), torch.from_numpy(b), sample_rate=sr))
    ref = _audiotools_mel_loss(a, b, sr)
    assert lm > 0.05 and abs(lm - lt) <= 1e-5 * lt and abs(lm - ref) <= 1e-5 * ref, (lm, lt, ref)
    assert float(M.dac_mel_loss(mx.array(a), mx.array(a), sample_rate=sr)) == 0.0
    assert float(T.dac_mel_loss(torch.from_numpy(a), torch.from_numpy(a), sample_rate=sr)) == 0.0
    # The linear-mel term and pow, off in DAC's recipe, agree between the frameworks too.
    kw = {"sample_rate": sr, "window_lengths": (64, 256), "n_mels": (10, 40), "pow": 2.0, "mag_weight": 0.5}
    x = float(M.dac_mel_loss(mx.array(a), mx.array(b), **kw))
    y = float(T.dac_mel_loss(torch.from_numpy(a), torch.from_numpy(b), **kw))
    assert x > 0.05 and abs(x - y) <= 1e-5 * y
    with pytest.raises(AudioError):
        M.dac_mel_loss(mx.array(a), mx.array(b[:, :100]), sample_rate=sr)
    with pytest.raises(SpecError):
        T.dac_mel_loss(torch.from_numpy(a), torch.from_numpy(b), sample_rate=sr, n_mels=(5,))


def test_feature_matching_rules():
    import mlx_speech.train.losses as M
    import torch_ref.train.losses as T

    r = np.random.default_rng(4)
    real = [[r.standard_normal((2, 5, 3)).astype(np.float32) for _ in range(k)] for k in (3, 4)]
    fake = [[r.standard_normal(x.shape).astype(np.float32) for x in layers] for layers in real]
    mt = [[mx.array(x) for x in layers] for layers in real], [[mx.array(x) for x in layers] for layers in fake]
    tt = ([[torch.from_numpy(x) for x in layers] for layers in real],
          [[torch.from_numpy(x) for x in layers] for layers in fake])
    every = sum(np.abs(a - b).mean() for ra, fa in zip(real, fake) for a, b in zip(ra, fa))
    dac = sum(np.abs(a - b).mean() for ra, fa in zip(real, fake) for a, b in zip(ra[:-1], fa[:-1]))
    assert abs(float(M.feature_matching_loss(*mt)) - every) < 1e-5 * every  # HiFi-GAN's, unchanged
    for got in (M.feature_matching_loss(*mt, exclude_last=True), T.feature_matching_loss(*tt, exclude_last=True)):
        assert abs(float(got) - dac) < 1e-5 * dac
    one = [[torch.ones(2)]], [[torch.zeros(2)]]
    assert float(T.feature_matching_loss(*one, exclude_last=True)) == 0.0


def test_gradients_reach_both_players(pair):
    """Descript's two losses on the SMALL discriminator: the discriminator's gradients agree
    between MLX and torch_ref and are finite and non-zero; a few Adam steps on a free waveform
    against a fixed discriminator lower the generator loss
    ``LSGAN_G + 2 * FM(exclude_last) + 15 * mel``."""
    import mlx_speech.train.losses as L
    import torch_ref.train.losses as TL

    m, t = pair
    real, fake = _wav(T=2400, seed=6), _wav(T=2400, seed=7, scale=0.1)

    def d_loss(model):
        s, _ = model(mx.concatenate([mx.array(real), mx.array(fake)]))
        return L.lsgan_discriminator_loss([x[:2] for x in s], [x[2:] for x in s])[0]

    loss, grads = nn.value_and_grad(m, d_loss)(m)
    t.zero_grad()
    s, _ = t(torch.from_numpy(np.concatenate([real, fake])))
    lt = TL.lsgan_discriminator_loss([x[:2] for x in s], [x[2:] for x in s])[0]
    lt.backward()
    assert abs(float(loss) - lt.item()) <= 1e-5 * lt.item()
    tg = {k: v.grad for k, v in t.named_parameters()}
    for k, g in flatten_tree(grads).items():
        g_np = np.array(g)
        assert np.isfinite(g_np).all(), k
        ref = tg[k].permute(*_torch_perm(tg[k])) if tg[k].ndim > 2 else tg[k]
        compare(g_np, ref, atol=1e-3 * float(tg[k].abs().max()) + 1e-9, name=f"grad {k}")
    assert sum(float(mx.abs(g).sum()) for g in flatten_tree(grads).values()) > 0

    class Free(nn.Module):
        def __init__(self):
            super().__init__()
            self.wav = mx.array(fake)

    gen, target = Free(), mx.array(real)
    _, real_feats = m(target)

    def g_loss(g):
        s, f = m(g.wav)
        adv = L.lsgan_generator_loss(s)[0]
        fm = L.feature_matching_loss(real_feats, f, exclude_last=True)
        return adv + 2.0 * fm + 15.0 * L.dac_mel_loss(g.wav, target, sample_rate=16000,
                                                        window_lengths=(32, 64, 128, 256), n_mels=(5, 10, 20, 40))

    opt, step = optim.Adam(learning_rate=1e-3), nn.value_and_grad(gen, g_loss)
    losses = []
    for _ in range(4):
        value, g = step(gen)
        assert np.isfinite(np.array(g["wav"])).all() and float(mx.abs(g["wav"]).sum()) > 0
        opt.update(gen, g)
        mx.eval(gen.parameters(), opt.state)
        losses.append(float(value))
    assert losses[-1] < losses[0], losses


# --- bad input ----------------------------------------------------------------------------------
def test_bad_input_is_one_clear_error(pair):
    m, t = pair
    with pytest.raises(AudioError, match=r"\(B, T\)"):
        m(mx.zeros((4001,)))
    with pytest.raises(AudioError, match="too short"):
        m(mx.array(_wav(T=200)))  # shorter than the 512-point STFT reflect padding
    with pytest.raises(AudioError, match="too short"):
        t(torch.from_numpy(_wav(T=200)))
