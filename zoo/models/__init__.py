"""Model families. Every module in this package is imported, so a family registers its
architectures and converters just by existing: a new paper is one new file here."""
import importlib
import pkgutil

from .resnet import BlockCtx, Slots, VideoResNet  # noqa: F401

for _m in pkgutil.iter_modules(__path__):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")
