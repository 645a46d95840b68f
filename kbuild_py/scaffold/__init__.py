"""`kmod-py new`: a module project from the templates."""
