"""CI pipelines: `kmod-py ci github|gitlab` writes a GitHub Actions workflow or a GitLab CI
pipeline from kmod.toml, and `kmod-py ci prepare|save` run inside those jobs.

One job model (model.py, pure) holds the matrix and the shell commands every job runs;
render.py turns it into either file through the templates in templates/ci/, so both CI
systems run the very same commands. images.py keeps kernel-headers images across jobs
(`docker save`/`docker load` through the Docker seam).
"""
