"""The application: configurations, resumable runs, files, figures, sweeps, verify and the CLI.

Everything that touches the file system lives here; every file goes through :mod:`jaxadv.app.io`.
"""
