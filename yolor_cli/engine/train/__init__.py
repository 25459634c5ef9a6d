"""Training: the run plan, the trainer and its hooks, loss, optimiser and DDP."""
