"""Datasets: annotation files of the papers' layouts (``read_samples``) and the decoded,
sampled, transformed videos (``VideoDataset``)."""
from .dataset import MODES, VideoDataset, views_mode
from .lists import FORMATS, BadLine, DataError, Sample, Samples, count_frames, read_samples, resolve_labels

__all__ = ["read_samples", "Sample", "Samples", "BadLine", "DataError", "VideoDataset", "views_mode", "MODES",
           "FORMATS", "count_frames", "resolve_labels"]
