"""slimflow's library: every pipeline step as a plain function (see `pipeline_lib.steps`)."""
__version__ = "0.2.0"
__all__ = ["__version__"]
