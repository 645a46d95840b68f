"""One module per outside process: host processes, Docker, QEMU, HTTP downloads."""
