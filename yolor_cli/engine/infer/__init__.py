"""Inference: the predictor, detection runs, drawing and ONNX runtimes."""
