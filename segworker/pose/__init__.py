"""The pose engine: garment masks from MediaPipe body landmarks and person masks."""

from segworker.pose.engine import PoseEngine

__all__ = ["PoseEngine"]
