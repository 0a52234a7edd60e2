"""Application glue over the models: codec files (:mod:`.codec`), text-to-speech synthesis
(:mod:`.synth`). Nothing here defines a model."""
