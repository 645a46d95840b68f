"""`kmod-py check`: what the kernel's loader checks, before insmod does."""
