"""Training: trainers, recipes, checkpoints, monitors, data parallel.

Framework-neutral modules (import neither mlx nor torch; ``torch_ref.train`` shares them):
``loop`` (the shared training loop), ``schedule`` (lr schedule, parameter groups),
``checkpoint`` (atomic rotating checkpoints), ``monitor`` (progress, JSONL, memory, thermal),
``task_base`` (task interface + registry), ``recipe`` (YAML + overrides -> trainer).
MLX modules: ``trainer``, ``optim`` (AdamW, EMA), ``distributed`` (``mx.distributed``),
``tiny`` (the small tasks used by tests and ``bench/train.py``).

Importing this package imports nothing heavy.
"""
