"""Training: data-parallel jit steps over a device mesh (``bat_jax.data.mesh``), SGD recipes, Orbax
checkpoints, weight transfer, metrics.

``config_checks`` (``ConfigError``, ``validate_config``, ``check_devices``) -> ``state`` (the
checkpointed pytree) -> ``optim`` (schedules, weight-decay mask) -> ``steps`` (the jit train step)
-> ``checkpoint`` (Orbax, resume, checksums) -> ``transfer`` (2-D -> 3-D inflation, the transfer
plan, ``config.init_from`` soft loading) -> ``faults`` (non-finite steps, failed saves, memory
check, fault hooks) -> ``preemption`` (SIGTERM / preemption sync point) -> ``metrics``
(metrics.jsonl, TensorBoard, console) -> ``broken_files`` (unreadable-input report) -> ``loop``
(``train_and_evaluate``) and ``evaluate`` (``evaluate_checkpoint``). Entry points: ``train.py``,
``evaluate.py``.
"""
