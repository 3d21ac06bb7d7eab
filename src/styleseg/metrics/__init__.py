"""Metrics as pure functions: segmentation agreement, distribution distances, label statistics."""
