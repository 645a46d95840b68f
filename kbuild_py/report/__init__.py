"""Rendering results: build, check and test reports, tables."""
