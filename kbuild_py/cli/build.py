"""kmod-py build command."""
