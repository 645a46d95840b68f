"""`kmod-py test`: boot kernels in QEMU with the module and judge the log."""
