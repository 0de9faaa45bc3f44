"""slimflow's library: every pipeline step as a plain function (see `pipeline_lib.steps`)."""
__version__ = "0.1.0"
__all__ = ["__version__"]
