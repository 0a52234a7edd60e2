"""Miipher-2 speech restoration: a frozen SSL encoder (w2v-BERT 2.0, HuBERT or WavLM: open
stand-ins for Google's USM) to layer L, parallel adapters beside its layers, and a HiFi-GAN
vocoder from the adapted features back to audio.

Files: ``spec.py`` (Miipher2Spec and presets), ``model.py`` (MLX; torch_ref mirrors it under
``torch_ref/models/miipher2/``), ``windows.py`` (the restore window grid and its stream,
framework-free), ``io.py`` (the audio boundary), ``load.py`` (a pretrained backbone from a
local transformers folder into a model), ``train_spec.py`` (the recipes of the three training
stages; tasks in ``train/tasks_miipher2.py``). No Miipher-2 weights are published: our tagged
files are the format. This ``__init__`` only registers the family; it imports no framework.
"""

from mlx_speech.registry import register_family

register_family(
    "miipher2",
    summary="Miipher-2 speech restoration (frozen SSL encoder + parallel adapters + vocoder)",
    models={"miipher2": {"spec": "mlx_speech.models.miipher2.spec:Miipher2Spec",
                         "mlx": "mlx_speech.models.miipher2.model:Miipher2Model",
                         "torch": "torch_ref.models.miipher2.model:Miipher2Model"}},
    tasks={"miipher2_adapters": {"mlx": "mlx_speech.train.tasks_miipher2:AdapterTask",
                                 "torch": "torch_ref.train.tasks_miipher2:AdapterTask"},
           "miipher2_vocoder": {"mlx": "mlx_speech.train.tasks_miipher2:VocoderTask",
                                "torch": "torch_ref.train.tasks_miipher2:VocoderTask"}},
    targets={"miipher2_adapters": ("miipher2_adapters", "miipher2_adapters.yaml"),
             "miipher2_vocoder": ("miipher2_vocoder", "miipher2_vocoder.yaml"),
             "miipher2_finetune": ("miipher2_vocoder", "miipher2_finetune.yaml")},
    evals={"restore": "mlx_speech.eval.restore:command"},
)
