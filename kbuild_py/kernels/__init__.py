"""Kernels to build against: spec model, resolution, build trees, which kernels a command targets."""
