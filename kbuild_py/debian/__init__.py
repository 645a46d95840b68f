"""The Debian archive: package indexes, kernel releases per suite, linux-image packages."""
