"""Putting images into a generator: settings, the optimisation, LPIPS and its weights, face alignment."""
