"""kmod-py new command."""
