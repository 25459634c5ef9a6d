"""yolor-cli: from Pascal-VOC folders to trained, pruned and exported YOLOR detectors."""

__version__ = "0.3.0"
