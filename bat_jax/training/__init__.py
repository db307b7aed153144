"""Training: data-parallel jit steps over a device mesh, SGD recipes, Orbax checkpoints, metrics.

``mesh`` (processes, devices, shardings) -> ``state`` (the checkpointed pytree) -> ``optim``
(schedules, weight-decay mask) -> ``steps`` (jit train / eval steps) -> ``checkpoint`` (Orbax,
resume, init_from) -> ``metrics`` (metrics.jsonl, TensorBoard, console) -> ``loop``
(``train_and_evaluate``, ``evaluate_checkpoint``, config validation). Entry points: ``train.py``,
``evaluate.py``.
"""
