"""`kmod-py build`: plan, sources, running make per kernel."""
