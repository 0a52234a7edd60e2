"""Evaluation of trained models on held-out data: 9-codebook Mimi (:mod:`.mimi9`), TTS
intelligibility (:mod:`.tts`)."""
