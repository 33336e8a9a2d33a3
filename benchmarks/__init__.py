"""jaxadv benchmarks: plain scripts, one per question, run by ``python -m benchmarks``.

A benchmark is any module ``benchmarks/<name>.py`` (name not starting with ``_``) that exposes
``main(quick: bool) -> dict``. The runner writes the returned dict, with metadata added, to
``benchmarks/results/<name>_<device>.json``. See ``benchmarks/README.md``.
"""
