"""A module project: kmod.toml and the module directory."""
