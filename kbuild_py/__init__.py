"""kmod-py: build, check and boot-test out-of-tree Linux kernel modules."""

__version__ = "0.1.0"
