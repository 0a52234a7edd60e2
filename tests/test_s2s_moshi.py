"""Upstream parity of the Moshi-style LM (issue 23, model B) against Kyutai's moshi 0.2.13.

moshi's ``LMModel`` is built small with random init (``get_moshi_lm(None, lm_kwargs=...)``),
every parameter perturbed (its norms start at one and would hide a swapped or dropped gain),
saved as a moshi folder (``model.safetensors`` + ``config.json``) and loaded through
``mlx_speech.load`` and ``torch_ref.load``. Acceptance: teacher-forced text and audio logits
within 1e-4 of ``LMModel.forward``; greedy generation token for token equal to
``LMGen(lm, use_sampling=False)`` over 20 frames; a mismatched checkpoint is one
CheckpointError line naming the keys. moshi's ``torch.compile`` is off (``no_compile``): the
test compares maths, not compilers.
"""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
import torch

import mlx_speech
import mlx_speech.errors
import torch_ref
from mlx_speech.errors import CheckpointError, SpecError
from mlx_speech.models.s2s.lm_formats import read_moshi_lm, recognise
from mlx_speech.models.s2s.lm_spec import MoshiLMSpec, moshiko, tiny

pytestmark = [pytest.mark.upstream, pytest.mark.usefixtures("one_torch_thread")]
loaders = pytest.importorskip("moshi.models.loaders", reason="moshi not installed")
from moshi.models.lm import LMGen  # noqa: E402
from moshi.utils.compile import no_compile  # noqa: E402

ATOL = 1e-4
STEPS = 20
# every optional feature the tiny preset leaves out, in one teacher-forced config
VARIANT = dict(norm="layer_norm", gating="none", layer_scale=0.1, depformer_layer_scale=0.2,
               kv_repeat=2, depformer_multi_linear=False, depformer_weights_per_step=False,
               bias_proj=True, norm_emb=True, depformer_norm="layer_norm_f32",
               extra_heads_num_heads=2, positional_embedding="sin", depformer_pos_emb="rope")
SCHEDULE = dict(depformer_weights_per_step_schedule=[0, 1, 1],
                depformer_dim_feedforward=[96, 64], depformer_pos_emb="sin")


def moshi_lm(spec: MoshiLMSpec, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    lm = loaders.get_moshi_lm(None, lm_kwargs=spec.to_moshi_config(), dtype=torch.float32)
    with torch.no_grad():
        for p in lm.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return lm.eval()


def released_spelling(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """moshi 0.2.13's ``in_projs.{s}`` / ``out_projs.{s}`` stacked into the released files'
    ``in_proj_weight`` / ``out_proj.weight``."""
    out, stacks = {}, {}
    for key, value in state.items():
        for per_set, stacked in ((".in_projs.", ".in_proj_weight"), (".out_projs.", ".out_proj.weight")):
            if per_set in key:
                head, tail = key.split(per_set)
                stacks.setdefault(head + stacked, {})[int(tail.split(".")[0])] = value
                break
        else:
            out[key] = value
    for key, sets in stacks.items():
        out[key] = torch.cat([sets[i] for i in range(len(sets))], dim=0)
    return out


def save_folder(path, lm, spec, *, released=True, dtype=torch.float32, config=True):
    from safetensors.torch import save_file

    state = lm.state_dict()
    state = released_spelling(state) if released else state
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(dtype).contiguous() for k, v in state.items()},
              str(path / "model.safetensors"))
    if config:
        (path / "config.json").write_text(json.dumps(
            {**spec.to_moshi_config(), "model_type": "moshi", "tokenizer_name": "t.model"}))
    return path


def random_codes(spec: MoshiLMSpec, batch: int, frames: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    text = rng.integers(0, spec.text_card, (batch, 1, frames))
    audio = rng.integers(0, spec.card, (batch, spec.n_q, frames))
    codes = np.concatenate([text, audio], axis=1)
    codes[0, 2, 3] = -1  # moshi's zero token: no input
    return codes


def moshi_logits(lm, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with no_compile(), torch.no_grad():
        out = lm(torch.from_numpy(codes))
    return out.text_logits.numpy(), out.logits.numpy()


def assert_close(ours, ref: np.ndarray, name: str) -> float:
    ours = ours.detach().numpy() if isinstance(ours, torch.Tensor) else np.array(ours)
    assert ours.shape == ref.shape, name
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=f"{name}: NaN pattern")
    err = float(np.nanmax(np.abs(ours - ref)))
    assert err < ATOL, f"{name}: max |diff| {err:.2e}"
    return err


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    spec = tiny()
    lm = moshi_lm(spec)
    folder = save_folder(tmp_path_factory.mktemp("moshi_lm"), lm, spec)
    return lm, spec, folder, mlx_speech.load(folder), torch_ref.load(folder)


def test_moshiko_preset_is_moshis_default_config():
    assert MoshiLMSpec.from_moshi_config(loaders._lm_kwargs) == moshiko()
    assert moshiko().main_ffn_hidden == 11264 and moshiko().depformer_ffn_hiddens == [2816] * 8


def test_key_map_covers_moshiko_exactly():
    """The 7B's state dict, built on the meta device (no memory), in the released spelling:
    every key and shape is the rename list's."""
    from moshi.models.lm import LMModel

    from mlx_speech.models.s2s.moshi_keys import moshi_key_map

    lm = LMModel(device="meta", dtype=torch.bfloat16, **loaders._lm_kwargs)
    shapes = {k: tuple(v.shape) for k, v in released_spelling(lm.state_dict()).items()}
    km = moshi_key_map(moshiko())
    assert shapes == {k: shape for k, (shape, _) in km.renames.items()}
    assert not km.dropped and len(km.ours()) == 1 + 16 + 32 * 9 + 1 + 1 + 8 + 7 + 1 + 6 * 8 * 7 + 6 * 2 + 8


def test_teacher_forced_logits_match_moshi(tiny_folder):
    lm, spec, folder, ours, tref = tiny_folder
    assert recognise(folder) and recognise(folder / "model.safetensors")
    codes = random_codes(spec, batch=2, frames=14)  # longer than the window (8)
    ref_text, ref_audio = moshi_logits(lm, codes)
    text, audio = ours(codes)
    errs = [assert_close(text, ref_text, "mlx text"), assert_close(audio, ref_audio, "mlx audio")]
    with torch.no_grad():
        t_text, t_audio = tref(codes)
    errs += [assert_close(t_text, ref_text, "torch text"),
             assert_close(t_audio, ref_audio, "torch audio")]
    print(f"max |logit diff| vs moshi: mlx {errs[:2]}, torch_ref {errs[2:]}")


@pytest.fixture(scope="module")
def lmgen_frames(tiny_folder):
    """A user stream and moshi ``LMGen``'s greedy answer, ``(1, 1 + dep_q, STEPS - max_delay)``."""
    lm, spec, _, _, _ = tiny_folder
    user = np.random.default_rng(1).integers(0, spec.card, (1, spec.user_codebooks, STEPS))
    gen, frames = LMGen(lm, use_sampling=False), []
    with no_compile(), gen.streaming(1):
        for t in range(STEPS):
            out = gen.step(torch.from_numpy(user[:, :, t: t + 1]))
            if out is not None:
                frames.append(out[:, :, 0].numpy())
    ref = np.stack(frames, axis=-1)
    assert ref.shape[-1] == STEPS - spec.max_delay
    assert len(np.unique(ref[:, 0])) > 3  # the stream is not stuck on one token
    return user, ref


def test_greedy_generation_matches_lmgen(tiny_folder, lmgen_frames):
    _, spec, _, ours, tref = tiny_folder
    user, ref = lmgen_frames
    for name, model in (("mlx", ours), ("torch_ref", tref)):
        text, audio = model.generate(user)
        np.testing.assert_array_equal(text, ref[:, 0], err_msg=f"{name} text tokens")
        np.testing.assert_array_equal(audio, ref[:, 1:], err_msg=f"{name} audio codes")
        model.reset_state()
        steps = [model.step(user[:, :, t: t + 1]) for t in range(STEPS)]
        assert steps[: spec.max_delay] == [None] * spec.max_delay
        np.testing.assert_array_equal(np.stack([s[0] for s in steps[spec.max_delay:]], -1),
                                      ref[:, 0], err_msg=f"{name} step()")


def test_generate_file_matches_lmgen(tmp_path, tiny_folder, lmgen_frames):
    from mlx_speech.io.codes import load_codes, save_codes
    from mlx_speech.pipelines.s2s import generate_file, read_generated

    _, spec, folder, _, _ = tiny_folder
    user, ref = lmgen_frames
    extra = np.zeros((1, 1, STEPS), np.int64)  # a codebook beyond the LM's: ignored, as LMGen
    src = save_codes(tmp_path / "user.safetensors", np.concatenate([user, extra], 1),
                     model="mimi", sample_rate=24000, frame_rate=12.5, codebook_size=spec.card,
                     num_samples=STEPS * 1920)
    summary = generate_file(folder, src, tmp_path / "out.safetensors", greedy=True)
    assert summary["frames"] == STEPS - spec.max_delay
    codes, text = read_generated(tmp_path / "out.safetensors")
    np.testing.assert_array_equal(text, ref[:, 0])
    np.testing.assert_array_equal(codes.codes, ref[:, 1:])
    assert (codes.model, codes.frame_rate, codes.codebook_size) == ("mimi", 12.5, spec.card)
    assert load_codes(tmp_path / "out.safetensors").num_codebooks == spec.dep_q
    bad = save_codes(tmp_path / "bad.safetensors", user, model="mimi", sample_rate=24000,
                     frame_rate=12.5, codebook_size=spec.card + 1, num_samples=0)
    for args, words in (((folder, bad, tmp_path / "o.safetensors"), "codes"),
                        ((folder, src, tmp_path), "folder"),
                        ((folder, src, tmp_path / "o.wav"), "written as"),
                        ((tmp_path / "user.safetensors", src, tmp_path / "o.safetensors"),
                         "not a recognised")):
        with pytest.raises(mlx_speech.errors.UserError, match=words) as exc:
            generate_file(*args)
        assert "\n" not in str(exc.value)
    assert not (tmp_path / "o.safetensors").exists()

    # the same through `mlx-speech s2s generate`, and a seeded sampled run that repeats
    from click.testing import CliRunner

    from cli import cli

    res = CliRunner().invoke(cli, ["s2s", "generate", "--weights", str(folder), "--user-codes",
                                   str(src), "--greedy", "-o", str(tmp_path / "cli.safetensors"),
                                   "--json"])
    assert res.exit_code == 0, res.output
    codes, text = read_generated(tmp_path / "cli.safetensors")
    np.testing.assert_array_equal(text, ref[:, 0])
    np.testing.assert_array_equal(codes.codes, ref[:, 1:])
    runs = []
    for name in ("s1", "s2"):
        res = CliRunner().invoke(cli, ["s2s", "generate", "--weights", str(folder), "--user-codes",
                                       str(src), "--sample", "--seed", "3", "--top-k", "5", "-o",
                                       str(tmp_path / f"{name}.safetensors"), "--no-progress"])
        assert res.exit_code == 0, res.output
        runs.append(read_generated(tmp_path / f"{name}.safetensors"))
    np.testing.assert_array_equal(runs[0][0].codes, runs[1][0].codes)
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    res = CliRunner().invoke(cli, ["s2s", "generate", "--weights", str(folder), "--user-codes",
                                   str(bad), "-o", str(tmp_path / "x.safetensors")])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output


@pytest.mark.parametrize("changes, released", [(VARIANT, False), (SCHEDULE, True)],
                         ids=["norms-mlp-sin-gqa-bias-heads", "schedule"])
def test_other_configs_match_moshi(tmp_path, changes, released):
    spec = tiny().replace(**changes)
    lm = moshi_lm(spec, seed=3)
    folder = save_folder(tmp_path, lm, spec, released=released)
    codes = random_codes(spec, batch=1, frames=10)
    ref_text, ref_audio = moshi_logits(lm, codes)
    for name, model in (("mlx", mlx_speech.load(folder)), ("torch_ref", torch_ref.load(folder))):
        with torch.no_grad():
            text, audio = model(codes)
        assert_close(text, ref_text, f"{name} text")
        assert_close(audio, ref_audio, f"{name} audio")


def test_bf16_file_loads_exactly(tmp_path, tiny_folder):
    lm, spec, _, _, _ = tiny_folder
    folder = save_folder(tmp_path, lm, spec, dtype=torch.bfloat16)
    rounded = moshi_lm(spec)
    rounded.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in lm.state_dict().items()})
    codes = random_codes(spec, batch=1, frames=6)
    ref_text, ref_audio = moshi_logits(rounded, codes)
    text, audio = mlx_speech.load(folder)(codes)
    assert_close(text, ref_text, "bf16 text")
    assert_close(audio, ref_audio, "bf16 audio")
    bf = mlx_speech.load(folder, dtype="bfloat16")  # computing in bf16: close, not equal
    assert bf.text_linear.weight.dtype == mx.bfloat16
    bf_text = np.array(bf(codes)[0].astype(mx.float32))
    assert np.abs(bf_text - ref_text).max() < 0.1


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_mismatched_checkpoints_are_one_line(tmp_path, tiny_folder):
    lm, spec, _, _, _ = tiny_folder
    state = released_spelling(lm.state_dict())
    from safetensors.torch import save_file

    missing = tmp_path / "missing"
    missing.mkdir()
    save_file({k: v.contiguous() for k, v in state.items() if k != "linears.1.weight"},
              str(missing / "model.safetensors"))
    (missing / "config.json").write_text(json.dumps(spec.to_moshi_config()))
    for load in (mlx_speech.load, torch_ref.load):
        with pytest.raises(CheckpointError) as exc:
            load(missing)
        assert "missing linears.1.weight" in one_line(exc)
    shaped = save_folder(tmp_path / "shape", lm, spec)  # the weights of another config
    (shaped / "config.json").write_text(json.dumps(spec.replace(card=50).to_moshi_config()))
    with pytest.raises(CheckpointError) as exc:
        torch_ref.load(shaped)
    assert "shape mismatch" in one_line(exc) and "emb.0.weight (41, 64) != (51, 64)" in str(exc.value)
    bare = save_folder(tmp_path / "bare", lm, spec, config=False)  # no config: moshiko assumed
    with pytest.raises(CheckpointError) as exc:
        mlx_speech.load(bare)
    assert "no config.json" in one_line(exc)
    with pytest.raises(CheckpointError) as exc:
        read_moshi_lm(shaped, spec=spec.replace(num_layers=3))
    assert "missing transformer.layers.2" in one_line(exc)


def test_config_json_rules():
    kw = dict(loaders._lm_kwargs)
    del kw["depformer_gating"], kw["depformer_max_period"]
    kw["gating"], kw["max_period"] = "gelu", 500
    spec = MoshiLMSpec.from_moshi_config({"lm_kwargs": kw})  # depformer inherits, as LMModel
    assert (spec.depformer_gating, spec.depformer_max_period) == ("gelu", 500.0)
    with pytest.raises(SpecError, match="conditioners"):
        MoshiLMSpec.from_moshi_config({**loaders._lm_kwargs, "conditioners": {"a": {}}})
    with pytest.raises(SpecError, match="delays"):
        MoshiLMSpec.from_moshi_config({**loaders._lm_kwargs, "delays": [0, 1]})
