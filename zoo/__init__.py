"""zoo: efficient video action-recognition networks (GC, AIA, STC, GST, SDA, TSN/TSM, TDN)
with a declarative, hub-style pretrained registry and complexity reports."""
__version__ = "0.1.0"

from .factory import EnsembleModel, create_model, model_info, param_groups  # noqa: E402
from .registry import list_models, register_arch, registry  # noqa: E402
from .convert import load_original, register_converter  # noqa: E402
from .complexity import complexity  # noqa: E402
from .transforms import create_transform  # noqa: E402

__all__ = ["create_model", "list_models", "model_info", "complexity", "load_original",
           "register_arch", "register_converter", "registry", "EnsembleModel", "create_transform", "param_groups",
           "__version__"]
