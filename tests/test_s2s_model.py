"""The encoder-decoder s2s model: MLX vs torch_ref logits, step-by-step decoding with the caches
equals the teacher-forced pass, greedy generation agrees across frameworks, the delay pattern,
token sampling, tagged files across frameworks, and bad input as one UserError line."""

import mlx.core as mx
import numpy as np
import pytest

import mlx_speech
from convert.parity import copy_mlx_to_torch, randomize_all
from mlx_speech.errors import CodesError, SpecError, UserError
from mlx_speech.models.s2s import encdec_pattern as pat
from mlx_speech.models.s2s import sampling as msamp
from mlx_speech.models.s2s.encdec import S2SModel
from mlx_speech.models.s2s.spec import S2SSpec

torch = pytest.importorskip("torch")
import torch_ref  # noqa: E402
from torch_ref.models.s2s import sampling as tsamp  # noqa: E402
from torch_ref.models.s2s.encdec import S2SModel as TorchS2S  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VARIANTS = {
    "sum_delay": {},
    "concat_parallel_conds": dict(embed="concat", pattern="parallel", num_speakers=3,
                                  num_emotions=2, num_languages=2),
    "delay3_norope_conds": dict(out_codebooks=3, cross_rope=False, num_speakers=2),
}


def spec_of(name):
    return S2SSpec.from_preset("s2s_tiny").replace(**VARIANTS[name])


def pair(spec, seed=0):
    mx.random.seed(seed)
    m = S2SModel(spec)
    randomize_all(m, scale=0.2, seed=seed)  # move norms and biases off their init
    t = TorchS2S(spec).eval()
    copy_mlx_to_torch(m, t)
    return m, t


def inputs(spec, rng, B=2, T=7, F=5):
    codes_in = rng.integers(0, spec.codebook_size, (B, spec.in_codebooks, T)).astype(np.int32)
    codes_out = rng.integers(0, spec.codebook_size, (B, spec.out_codebooks, F)).astype(np.int32)
    in_mask = np.ones((B, T), bool)
    in_mask[1, T - 2:] = False
    dec_in, target, mask = pat.teacher_forcing(codes_out, np.array([F, F - 2]),
                                               special=spec.special, pattern=spec.pattern)
    conds = {name: np.array([min(1, n - 1), -1], np.int32)
             for name, n in spec.conditions().items() if n}
    return codes_in, in_mask, dec_in, conds


@pytest.mark.parametrize("name", list(VARIANTS))
def test_mlx_torch_logits_and_cached_steps_equal_full_pass(rng, name):
    spec = spec_of(name)
    m, t = pair(spec)
    codes_in, in_mask, dec_in, conds = inputs(spec, rng)
    full = np.array(m(mx.array(codes_in), mx.array(dec_in), in_mask=mx.array(in_mask),
                      **{k: mx.array(v) for k, v in conds.items()}))
    assert full.shape == (2, spec.out_codebooks, dec_in.shape[2], spec.codebook_size)
    with torch.no_grad():
        want = t(torch.from_numpy(codes_in), torch.from_numpy(dec_in),
                 in_mask=torch.from_numpy(in_mask),
                 **{k: torch.from_numpy(v) for k, v in conds.items()}).numpy()
    np.testing.assert_allclose(full, want, atol=1e-4)
    # decoding one step at a time against the caches gives the teacher-forced logits
    for model, wrap, back in ((m, mx.array, np.array), (t, torch.from_numpy, lambda a: a.numpy())):
        state = model.start(codes_in, in_mask=in_mask, **conds)
        steps = [back(model.decode_step(wrap(dec_in[:, :, s]), state))
                 for s in range(dec_in.shape[2])]
        np.testing.assert_allclose(np.stack(steps, axis=2), full, atol=1e-5)


@pytest.mark.parametrize("name", ["sum_delay", "concat_parallel_conds"])
def test_greedy_generation_agrees_and_streams_frames(rng, name):
    spec = spec_of(name)
    m, t = pair(spec, seed=1)
    codes_in, in_mask, _, conds = inputs(spec, rng)
    frames = []
    out = np.array(m.generate(codes_in, 4, in_mask=in_mask, **conds,
                              on_frame=lambda i, c: frames.append((i, np.array(c)))))
    assert out.shape == (2, spec.out_codebooks, 4) and out.dtype == np.int32
    assert 0 <= out.min() and out.max() < spec.codebook_size  # forced specials never leak
    assert [i for i, _ in frames] == [0, 1, 2, 3]
    np.testing.assert_array_equal(np.stack([c for _, c in frames], axis=2), out)
    np.testing.assert_array_equal(t.generate(codes_in, 4, in_mask=in_mask, **conds).numpy(), out)
    # the generated codes, fed back by teacher forcing, are each step's argmax
    dec_in, target, mask = pat.teacher_forcing(out, None, special=spec.special, pattern=spec.pattern)
    logits = np.array(m(mx.array(codes_in), mx.array(dec_in), in_mask=mx.array(in_mask),
                        **{k: mx.array(v) for k, v in conds.items()}))
    assert np.all((logits.argmax(-1) == target)[mask > 0])
    # default length: the input's frames; seeded sampling repeats
    assert m.generate(codes_in[:1]).shape == (1, spec.out_codebooks, codes_in.shape[2])
    a = np.array(m.generate(codes_in, 3, temperature=1.0, top_k=4, top_p=0.9, seed=5, **conds))
    b = np.array(m.generate(codes_in, 3, temperature=1.0, top_k=4, top_p=0.9, seed=5, **conds))
    np.testing.assert_array_equal(a, b)


def test_delay_pattern_round_trip_and_forced_positions(rng):
    codes = rng.integers(0, 10, (2, 3, 6))
    z = pat.to_sequence(codes, np.array([6, 4]), special=10, pattern="delay")
    assert z.shape == (2, 3, 8)
    assert z[0, 2, 0] == z[0, 2, 1] == 10 and z[0, 2, 2] == codes[0, 2, 0]
    back = pat.from_sequence(z, pattern="delay")
    np.testing.assert_array_equal(back[0], codes[0])
    np.testing.assert_array_equal(back[1, :, :4], codes[1, :, :4])
    assert np.all(back[1, :, 4:] == 10)
    assert pat.forced(0, 6, 3, "delay").tolist() == [False, True, True]
    assert pat.forced(7, 6, 3, "delay").tolist() == [True, True, False]
    assert not pat.forced(3, 6, 3, "parallel").any()
    dec_in, target, mask = pat.teacher_forcing(codes, np.array([6, 4]), special=10, pattern="delay")
    np.testing.assert_array_equal(dec_in[:, :, 1:], z[:, :, :-1])
    assert np.all(dec_in[:, :, 0] == 10) and mask.sum() == 3 * (6 + 4)


def test_sampling_same_maths_in_both_frameworks(rng):
    logits = rng.standard_normal((3, 4, 50)).astype(np.float32) * 3
    u = rng.uniform(size=logits.shape).astype(np.float32)
    for opts in (dict(temperature=1.0), dict(temperature=0.7, top_k=5),
                 dict(temperature=1.3, top_p=0.6), dict(temperature=1.0, top_k=10, top_p=0.8)):
        a = np.array(msamp.sample_with_uniform(mx.array(logits), mx.array(u), **opts))
        b = tsamp.sample_with_uniform(torch.from_numpy(logits), torch.from_numpy(u), **opts).numpy()
        np.testing.assert_array_equal(a, b)
        kept = np.array(msamp.filter_logits(mx.array(logits / opts["temperature"]),
                                            top_k=opts.get("top_k", 0), top_p=opts.get("top_p", 1.0)))
        assert np.all(np.isfinite(np.take_along_axis(kept, a[..., None], -1)))  # a kept token
    greedy = logits.argmax(-1)
    for opts in (dict(temperature=0.0), dict(temperature=1.0, top_k=1),
                 dict(temperature=1.0, top_p=1e-6)):
        np.testing.assert_array_equal(np.array(msamp.sample(mx.array(logits), **opts)), greedy)
        np.testing.assert_array_equal(tsamp.sample(torch.from_numpy(logits), **opts).numpy(), greedy)
    k = mx.random.key(3)
    np.testing.assert_array_equal(np.array(msamp.sample(mx.array(logits), key=k)),
                                  np.array(msamp.sample(mx.array(logits), key=k)))
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    np.testing.assert_array_equal(tsamp.sample(torch.from_numpy(logits), generator=g()).numpy(),
                                  tsamp.sample(torch.from_numpy(logits), generator=g()).numpy())
    # a draw follows the distribution: a 2-way split of 0.8 / 0.2
    two = mx.broadcast_to(mx.array(np.log([0.8, 0.2]).astype(np.float32)), (4000, 2))
    share = float(np.array(msamp.sample(two, key=mx.random.key(0))).mean())
    assert abs(share - 0.2) < 0.03
    for bad in (dict(temperature=-1.0), dict(temperature=1.0, top_k=-2),
                dict(temperature=1.0, top_p=0.0), dict(temperature=1.0, top_p=1.5)):
        with pytest.raises(SpecError):
            msamp.sample(mx.array(logits), **bad)
        with pytest.raises(SpecError):
            tsamp.sample(torch.from_numpy(logits), **bad)


def test_tagged_files_load_across_frameworks(rng, tmp_path):
    from mlx_speech.weights.mlx import save_mlx_model
    from torch_ref.weights import save_torch_model

    spec = spec_of("concat_parallel_conds")
    m, t = pair(spec, seed=2)
    codes_in, in_mask, dec_in, conds = inputs(spec, rng)
    save_mlx_model(tmp_path / "m.safetensors", m, model="s2s", spec=spec)
    save_torch_model(tmp_path / "t.safetensors", t, model="s2s", spec=spec)
    want = np.array(m(mx.array(codes_in), mx.array(dec_in), in_mask=mx.array(in_mask),
                      **{k: mx.array(v) for k, v in conds.items()}))
    for f in ("m", "t"):
        ml = mlx_speech.load(tmp_path / f"{f}.safetensors")
        tl = torch_ref.load(tmp_path / f"{f}.safetensors")
        assert isinstance(ml, S2SModel) and isinstance(tl, TorchS2S) and ml.spec == spec
        got = np.array(ml(mx.array(codes_in), mx.array(dec_in), in_mask=mx.array(in_mask),
                          **{k: mx.array(v) for k, v in conds.items()}))
        np.testing.assert_allclose(got, want, atol=1e-6)
        with torch.no_grad():
            gt = tl(torch.from_numpy(codes_in), torch.from_numpy(dec_in),
                    in_mask=torch.from_numpy(in_mask),
                    **{k: torch.from_numpy(v) for k, v in conds.items()}).numpy()
        np.testing.assert_allclose(gt, want, atol=1e-4)


@pytest.mark.parametrize("lib", ["mlx", "torch"])
def test_bad_input_is_one_user_error_line(lib):
    spec = spec_of("delay3_norope_conds")
    model = S2SModel(spec) if lib == "mlx" else TorchS2S(spec)
    ok = np.zeros((1, spec.in_codebooks, 4), np.int32)
    cases = [
        (CodesError, "out of range 0..15", dict(codes_in=ok + 16)),
        (CodesError, "out of range", dict(codes_in=ok - 1)),
        (CodesError, "3 codebooks, the model takes 2", dict(codes_in=np.zeros((1, 3, 4), np.int32))),
        (CodesError, "at least one frame", dict(codes_in=ok[:, :, :0])),
        (CodesError, "integers", dict(codes_in=ok.astype(np.float32))),
        (CodesError, "shape", dict(codes_in=ok[0])),
        (SpecError, "speaker id 2 is out of range 0..1", dict(codes_in=ok, speaker=2)),
        (SpecError, "no emotion embedding", dict(codes_in=ok, emotion=0)),
        (SpecError, "max_frames", dict(codes_in=ok, max_frames=0)),
        (SpecError, "top_p", dict(codes_in=ok, temperature=1.0, top_p=0.0)),
        (SpecError, "in_mask", dict(codes_in=ok, in_mask=np.zeros((1, 4), bool))),
    ]
    for err, msg, kw in cases:
        with pytest.raises(err, match=msg) as info:
            model.generate(**kw)
        assert isinstance(info.value, UserError) and "\n" not in str(info.value)
    with pytest.raises(SpecError, match="even head size"):
        S2SSpec.from_preset("s2s_tiny").replace(dim=30, num_heads=2)
    with pytest.raises(SpecError, match="unknown key"):
        S2SSpec.from_yaml("dims: 3\n")
