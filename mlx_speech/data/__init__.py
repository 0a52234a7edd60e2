"""Data (framework-neutral: numpy + soundfile, no mlx, no torch).

``manifest`` (JSONL manifests, audio folders, LJSpeech), ``sampler`` (weighted multilingual
batch plans, length bucketing, sharding), ``loader`` (prefetching batches, random crops),
``augment`` (SpecAugment masks, noise at an SNR), ``synth_corpus`` + ``voices`` +
``sentences`` (offline corpus from festival / espeak-ng / flite), ``toy`` (a synthetic corpus),
``degrade`` (noise, reverb, band limits, codecs, clipping, packet loss for restoration training;
with ``degrade_ops``, ``degrade_room``, ``degrade_codecs``).
"""
