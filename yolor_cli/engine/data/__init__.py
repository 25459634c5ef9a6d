"""Datasets: VOC folders, splits, YOLO labels, synthetic data and the training data pipeline."""
