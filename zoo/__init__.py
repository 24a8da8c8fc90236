"""zoo: efficient video action-recognition networks (GC, AIA, STC, GST, SDA, TSN/TSM, TDN)
with a declarative, hub-style pretrained registry and complexity reports."""
from .version import __version__  # noqa: E402,F401

from .factory import EnsembleModel, create_model, model_info, param_groups  # noqa: E402
from .registration import register_arch, register_converter  # noqa: E402
from .registry import list_models, registry  # noqa: E402
from .convert import load_original  # noqa: E402
from .complexity import complexity  # noqa: E402
from .transforms import create_transform  # noqa: E402
from .inference import Recognizer, predict  # noqa: E402
from . import deploy  # noqa: E402,F401  (callable: zoo.deploy(model, example_input))

__all__ = ["create_model", "list_models", "model_info", "complexity", "load_original",
           "register_arch", "register_converter", "registry", "EnsembleModel", "create_transform", "param_groups",
           "Recognizer", "predict", "deploy", "__version__"]
