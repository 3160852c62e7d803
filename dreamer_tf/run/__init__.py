"""Run infrastructure: the training loop, checkpoints and logging."""
