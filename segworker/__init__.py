"""Segmentation workers: the engines (SCHP, pose) and the worker process around them."""
