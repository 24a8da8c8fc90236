"""Pretrained weights: where a file comes from, whether it can be trusted, and loading it.

The package by job:

- :mod:`zoo.weights.manifest` reads, validates and writes weights_manifest.json;
- :mod:`zoo.weights.fetch` resolves a name to a verified local file (mirror, Hub cache, download);
- :mod:`zoo.weights.files` safetensors I/O, sha256, and :func:`atomic_write` for every file the zoo writes;
- :mod:`zoo.weights.imagenet` initialises the 2D ResNet from ImageNet;
- :mod:`zoo.weights.card` the model card, config.json and citation;
- :mod:`zoo.weights.load` strict loading, model folders and the ``hf-hub:`` / ``local-dir:`` names.

Guarantees: a hosted file is used only after its size and sha256 match the manifest (a manifest
entry that lacks them is refused); files are read with safetensors (never unpickled) and loaded
strictly (every key, shape and float dtype); nothing outside the Hub cache is ever deleted and no
user file is overwritten without ``--force``; every write goes to a temporary name first.
"""
from .card import citation, label_fields, model_card, model_config
from .fetch import (ENV_DIR, ENV_TIMEOUT, OFFLINE_HINT, cache_dir, cached_path, hub_download, hub_timeout,
                    incomplete_files, mirror_dirs, offline, purge_cached, resolve)
from .files import (FILENAME, INCOMPLETE, WeightsError, atomic_write, copy_file, file_meta, is_incomplete,
                    read_weights, save_weights, sha256, verify_file)
from .imagenet import IMAGENET, imagenet_path, imagenet_state_dict, inflate, load_imagenet_backbone
from .load import (CARD, CONFIG, SOURCE_PREFIXES, create_from_source, is_source_name, load_pretrained,
                   load_state_dict_strict, save_pretrained, source_files, write_model_folder)
from .manifest import (HOSTED_FIELDS, STATUSES, ManifestError, build_manifest, check_manifest, entry,
                       entry_problems, manifest_path, names_or_all, not_hosted_message, read_manifest, variant,
                       write_manifest)

__all__ = ["load_pretrained", "load_imagenet_backbone", "resolve", "verify_file", "WeightsError", "ManifestError",
           "read_weights", "save_weights", "model_card", "model_config", "citation", "label_fields",
           "build_manifest", "check_manifest", "write_manifest", "read_manifest", "manifest_path", "entry",
           "entry_problems", "variant", "not_hosted_message", "names_or_all", "cached_path", "cache_dir",
           "offline", "mirror_dirs", "purge_cached", "incomplete_files", "hub_download", "hub_timeout",
           "sha256", "atomic_write", "copy_file", "file_meta", "is_incomplete", "imagenet_path",
           "imagenet_state_dict", "inflate", "IMAGENET", "load_state_dict_strict", "create_from_source",
           "is_source_name", "source_files", "save_pretrained", "write_model_folder", "SOURCE_PREFIXES",
           "FILENAME", "CONFIG", "CARD", "INCOMPLETE", "ENV_DIR", "ENV_TIMEOUT", "OFFLINE_HINT", "STATUSES",
           "HOSTED_FIELDS", "copy_verified"]

copy_verified = copy_file   # the name before the package split
