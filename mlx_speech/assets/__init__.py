"""Files shipped with the package: the bundled TTS voice (tts/en_slt) and its sentence lists."""
