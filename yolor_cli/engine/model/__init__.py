"""The model: Darknet cfgs, layers, checkpoints, loading and summaries."""
