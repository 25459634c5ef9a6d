"""Evaluation: COCO and YOLOR metrics, the evaluator and its plots."""
