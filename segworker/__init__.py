"""Segmentation workers: the engines (parser, SCHP) and the worker process around them."""
