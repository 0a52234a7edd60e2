"""Vocos-style vocoder, torch mirror (``model.py``)."""
