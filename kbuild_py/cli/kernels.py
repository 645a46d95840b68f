"""kmod-py kernels command."""
