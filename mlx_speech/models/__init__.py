"""Model families, one folder each (``mlx_speech/models/<family>/``, mirrored in
``torch_ref/models/<family>/``). Each folder's ``__init__`` makes its one
:func:`mlx_speech.registry.register_family` call and imports no framework; the registry finds
the folders itself. See docs/ARCHITECTURE.md, "Adding a model family"."""
