"""Docker images kmod-py builds in: kernel-headers images, base images, build-tree snapshots."""
