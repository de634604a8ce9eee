"""Training: margin losses and the training loop."""
