"""Kernels to build against: spec model, resolution, build trees, choosing targets."""
