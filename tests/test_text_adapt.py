"""Teacher-matched English phones (mlx_speech/text/adapt.py): what is learned from a corpus with
word / phone timings, how the front end and a voice use it, and its files' errors."""

import json
import types

import numpy as np
import pytest

from mlx_speech.text import TextError, TextFrontend
from mlx_speech.text.adapt import ADAPTATION_FILE, FrontendAdaptation, break_agreement, fit
from mlx_speech.text.symbols import SP

LEX = {"to": ("t", "uw"), "and": ("ax", "n", "d"), "we": ("w", "iy"), "walked": ("w", "ao", "k", "t"),
       "home": ("hh", "ow", "m"), "ran": ("r", "ae", "n"), "sang": ("s", "ae", "ng"), "the": ("dh", "ax"),
       "park": ("p", "aa", "r", "k"), "they": ("dh", "ey"), "went": ("w", "eh", "n", "t"),
       "started": ("s", "t", "aa", "r", "t", "ih", "d"), "rested": ("r", "eh", "s", "t", "ih", "d"),
       "lasted": ("l", "ae", "s", "t", "ih", "d"), "tested": ("t", "eh", "s", "t", "ih", "d"),
       "waited": ("w", "ey", "t", "ih", "d"), "hunted": ("hh", "ah", "n", "t", "ih", "d"),
       "painted": ("p", "ey", "n", "t", "ih", "d")}
# the teacher: "to" reduced, "and" in full, "-ted" with a schwa, a pause before "and"
TEACHER = {**LEX, "to": ("t", "ax"), "and": ("ae", "n", "d"),
           **{w: p[:-2] + ("ax", "d") for w, p in LEX.items() if w.endswith("ted")}}


def _item(words):
    """A corpus item with word and phone timings (10 ms a phone, 50 ms pauses before "and")."""
    t, w_out, p_out = 0.1, [], [("pau", 0.0, 0.1)]
    for w in words:
        if w == "and":
            p_out.append(("pau", t, t + 0.05))
            t += 0.05
        start = t
        for p in TEACHER[w]:
            p_out.append((p, t, t + 0.01))
            t += 0.01
        w_out.append((w, start, t))
    p_out.append(("pau", t, t + 0.1))
    return types.SimpleNamespace(text=" ".join(words).capitalize() + ".", words=w_out, phones=p_out)


SENTENCES = ["we walked to the park and sang", "they ran home and rested", "we went to the park and waited",
             "they started and tested", "we hunted and painted", "they walked to the park and lasted"]
CORPUS = [_item(s.split()) for s in SENTENCES] * 3


def _ours(word):
    return LEX[word.lower()]


def test_fit_learns_word_forms_endings_and_pauses():
    ad = fit(CORPUS, _ours)
    assert ad.lexicon["to"] == ("t", "ax") and ad.lexicon["and"] == ("ae", "n", "d")
    assert "home" not in ad.lexicon  # same in both
    assert ((("t", "ih", "d"), ("t", "ax", "d"))) in ad.suffixes
    # an ending rule reaches a word the corpus never had; others are untouched
    assert ad.pronounce("Visited", ("v", "ih", "z", "ih", "t", "ih", "d")) == ("v", "ih", "z", "ih", "t", "ax", "d")
    assert ad.pronounce("walked", LEX["walked"]) == LEX["walked"]
    tokens = ["They", "went", "home", "and", "sang"]
    assert ad.breaks(tokens) == {2}  # after "home", before "and"
    assert ad.breaks(["We", "went", ",", "and", "sang"]) == set()  # punctuation pauses already
    rep = break_agreement(ad, CORPUS)
    assert rep["precision"] == 1.0 and rep["recall"] == 1.0 and rep["teacher_pauses"] == 18


def test_no_rule_without_support():
    few = [_item("they started and tested".split())]  # two "-ted" words: below the support
    ad = fit(few, _ours)
    assert ad.suffixes == []
    never = [_item("we walked to the park".split())] * 3  # never a pause: never predict one
    assert fit(never, _ours).breaks(["we", "walked", "to", "the", "park", "and", "sang"]) == set()
    with pytest.raises(TextError, match="no corpus item has word and phone timings"):
        fit([types.SimpleNamespace(text="Hi.", words=None, phones=None)], _ours)


def test_front_end_applies_it(monkeypatch):
    import mlx_speech.text.frontend as fe_mod

    monkeypatch.setattr(fe_mod, "english_word", _ours)
    ad = fit(CORPUS, _ours)
    plain = TextFrontend().phonemize("They went home and sang.")
    adapted = TextFrontend(adaptation=ad).phonemize("They went home and sang.")
    assert SP not in plain and plain[-4:-1] == ["s", "ae", "ng"]
    assert adapted == ["<sil>", "dh", "ey", "w", "eh", "n", "t", "hh", "ow", "m", SP, "ae", "n", "d",
                       "s", "ae", "ng", "<sil>"]
    # Hindi / Telugu text is untouched by an (English) adaptation
    assert TextFrontend(adaptation=ad).phonemize("नमस्ते", "hi") == TextFrontend().phonemize("नमस्ते", "hi")


def test_file_round_trip_and_errors(tmp_path):
    ad = fit(CORPUS, _ours)
    path = tmp_path / ADAPTATION_FILE
    ad.save(path)
    back = FrontendAdaptation.load(path)
    assert back.lexicon == ad.lexicon and back.suffixes == ad.suffixes and back.known == ad.known
    assert back.breaks(["They", "went", "home", "and", "sang"]) == {2}
    np.testing.assert_allclose(sorted(back.weights.values()), sorted(ad.weights.values()), atol=1e-5)
    path.write_text("{not json")
    with pytest.raises(TextError, match="cannot read"):
        FrontendAdaptation.load(path)
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(TextError, match="not a front-end adaptation"):
        FrontendAdaptation.load(path)
    data = ad.to_json()
    data["break_weights"] = {"bias": "many"}
    path.write_text(json.dumps(data))
    with pytest.raises(TextError, match="malformed"):
        FrontendAdaptation.load(path)
    data["break_weights"] = {"bias": float("nan")}
    path.write_text(json.dumps(data))
    with pytest.raises(TextError, match="non-finite"):
        FrontendAdaptation.load(path)


def test_bundled_voice_ships_its_adaptation(tmp_path):
    from mlx_speech.pipelines.synth import Synthesizer, resolve_voice

    voice = resolve_voice("en_slt")
    assert (voice / ADAPTATION_FILE).is_file()
    syn = Synthesizer("en_slt", vocoder="griffin-lim")
    assert syn.frontend.adaptation is not None
    assert syn.frontend.adaptation.pronounce("to", ("t", "uw")) == ("t", "ax")  # festival's reduced "to"


def test_corrupt_adaptation_is_one_line_cli_error(tmp_path):
    import shutil

    from click.testing import CliRunner

    from cli import cli as main
    from mlx_speech.pipelines.synth import resolve_voice

    voice = tmp_path / "v"
    shutil.copytree(resolve_voice("en_slt"), voice)
    (voice / ADAPTATION_FILE).write_text('{"format": "mlx-speech frontend adaptation v1"}')
    res = CliRunner().invoke(main, ["synth", "Hi.", "--weights", str(voice), "--vocoder", "griffin-lim",
                                    "-o", str(tmp_path / "o.wav")])
    assert res.exit_code == 2 and "frontend.json" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o.wav").exists()


def test_data_tts_frontend_command(tmp_path):
    from click.testing import CliRunner

    from cli import cli as main

    rows = []
    for k, it in enumerate(CORPUS[:6]):
        rows.append({"path": f"wavs/{k}.wav", "text": it.text, "lang": "en", "speaker": "s", "duration": 1.0,
                     "sample_rate": 22050, "phones": [list(p) for p in it.phones],
                     "words": [list(w) for w in it.words]})
    man = tmp_path / "manifest.jsonl"
    man.write_text("".join(json.dumps(r) + "\n" for r in rows))
    voice = tmp_path / "voice"
    voice.mkdir()
    (voice / "voice.json").write_text('{"language": "en"}')
    res = CliRunner().invoke(main, ["data", "tts-frontend", "--manifest", str(man), "-o", str(voice), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["items"] == 6 and out["pauses_train"]["teacher_pauses"] == 6
    assert FrontendAdaptation.load(voice / ADAPTATION_FILE).breaks(["They", "ran", "home", "and", "sang"]) == {2}
    res = CliRunner().invoke(main, ["data", "tts-frontend", "--manifest", str(man), "-o", str(tmp_path)])
    assert res.exit_code == 2 and "not a voice folder" in res.output
    res = CliRunner().invoke(main, ["data", "tts-frontend", "--manifest", str(tmp_path / "no.jsonl"), "-o", str(voice)])
    assert res.exit_code == 2 and "manifest not found" in res.output
