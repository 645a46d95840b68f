"""Explaining kernel API drift: when a module fails to build on one kernel, what the kernels'
headers say about the identifiers in its errors, and since when.

diagnostics (compiler/objtool/modpost lines -> Mentions) -> headers (one grep per kernel,
declarations cut out by decls) -> drift (per-kernel comparison, version range, guard) ->
render (text, JSON). service ties them together; imageheaders copies an image's headers
out once per release. Facts come from headers only: nothing is guessed or renamed.
"""
