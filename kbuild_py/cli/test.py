"""kmod-py test command."""
