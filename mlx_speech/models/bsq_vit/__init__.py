"""BSQ-ViT audio tokenizer: log-mel patches -> ViT with conformer convolution -> binary
spherical quantization (18 / 36 bits per patch) -> ViT -> mel -> Griffin-Lim or HiFi-GAN.

Files: ``spec.py`` (BSQViTSpec, presets, the vocoder spec), ``gan_spec.py`` (the PatchGAN
discriminator's spec; the discriminator is ``train/bsq_vit_discriminator.py``). This
``__init__`` only registers the family; it imports no framework.
"""
