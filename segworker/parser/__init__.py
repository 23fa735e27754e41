"""The garment parser engine: network, person crop, weights file, training."""
