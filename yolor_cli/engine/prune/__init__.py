"""Structural pruning and the prune commands' engine calls."""
