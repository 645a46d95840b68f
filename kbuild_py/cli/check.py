"""kmod-py check command."""
