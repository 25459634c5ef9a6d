"""Deployment: verified exports to ONNX, TorchScript and stripped checkpoints."""
