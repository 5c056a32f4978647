"""fastnn: train multilayer perceptrons fast on the CPU."""
try:
    from .kernels import available_backends, get_backend, set_backend, use_backend
except ModuleNotFoundError as error:  # pragma: no cover - depends on how it is run
    if error.name != "fastnn.kernels":
        raise
    raise ImportError(
        "fastnn.kernels is missing: fastnn is being imported from its source tree, "
        "where the kernels live in kernels/. Install it (pip install -e .) and run "
        "from another directory, or use pytest as configured in pyproject.toml."
    ) from error
from .config import config_info, show_config

__version__ = "0.1.0"

__all__ = ["available_backends", "config_info", "get_backend", "set_backend", "show_config",
           "use_backend", "__version__"]
