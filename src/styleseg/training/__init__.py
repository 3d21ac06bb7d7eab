"""Training: losses, augmentation, EMA, checkpoints, distributed helpers and the loop."""
