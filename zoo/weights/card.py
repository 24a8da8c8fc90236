"""What travels with a weight file: the Hub model card (README.md), config.json and the citation."""
from __future__ import annotations

import json
import re
from typing import Optional, Sequence

from ..registry import registry
from .manifest import variant

__all__ = ["model_card", "model_config", "citation", "label_fields"]


def _y(s) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def citation(paper) -> str:
    key = re.sub(r"\W", "", paper.authors.split(",")[0].split()[-1].lower()) + str(paper.year) + paper.id
    authors = " and ".join(a.strip() for a in paper.authors.split(","))
    return (f"@article{{{key},\n  title = {{{paper.title}}},\n  author = {{{authors}}},\n"
            f"  journal = {{{paper.venue}}},\n  year = {{{paper.year}}},\n"
            + (f"  url = {{{paper.url}}},\n" if paper.url else "") + "}")


def label_fields(label_names: Optional[Sequence[str]], num_classes: int) -> dict:
    """``label_names`` and ``id2label`` (timm's / transformers' config keys) for a class list."""
    if label_names is None:
        return {}
    names = [str(x) for x in label_names]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} label names for {num_classes} classes")
    return {"label_names": names, "id2label": {str(i): n for i, n in enumerate(names)}}


def model_card(name: str, sha: str = "", source_file: str = "", label_names: Optional[Sequence[str]] = None) -> str:
    """A Hub model card (README.md with YAML metadata) for a variant, claims from the registry.
    With ``label_names`` the card lists the classes (and its YAML carries them)."""
    from ..version import __version__

    reg = registry()
    v = variant(name)
    ds = reg.datasets[v.dataset]
    paper = reg.papers[v.paper]
    fam = reg.archs[v.arch].family
    claims = list(v.claims)
    y = ["---", "library_name: zoo", "pipeline_tag: video-classification",
         "tags:", "- video-classification", "- action-recognition", f"- {_y(fam)}", f"- {_y(v.arch)}",
         "datasets:", f"- {_y(ds.title)}", "metrics:", "- accuracy"]
    if claims:
        y += ["model-index:", f"- name: {_y(name)}", "  results:", "  - task:",
              "      type: video-classification", "      name: Action recognition",
              "    dataset:", f"      name: {_y(ds.title)}", f"      type: {_y(v.dataset)}", "    metrics:"]
        for c in claims:
            for metric, val in c.metrics.items():
                label = f"{metric} ({reg.papers[c.paper].short or c.paper} {c.table}, {c.views or '?'} views)"
                y += ["    - type: accuracy", f"      name: {_y(label)}", f"      value: {val}",
                      "      verified: false"]
    if label_names is None:
        from ..labels import label_names as bundled

        label_names = bundled(name)
    labels = label_fields(label_names, v.num_classes)
    if labels:
        y += ["label_names:"] + [f"- {_y(n)}" for n in labels["label_names"]]
    y.append("---")
    lines = [f"# {name}", "",
             f"{v.arch} ({fam} family) trained on {ds.title} ({v.num_classes} classes) with {v.frames} frames "
             f"at {v.input_size}x{v.input_size}, from *{paper.title}* ({paper.authors}, {paper.venue} {paper.year}).",
             "", "Converted from the authors' released checkpoint with `zoo convert` "
             f"(zoo {__version__}); the tensors are the authors', only renamed.", ""]
    if v.source and v.source.get("url"):
        lines += [f"- Original checkpoint: {v.source['url']} ({v.source.get('format', '?')})"]
    if source_file:
        lines += [f"- Converted from: `{source_file}`"]
    if sha:
        lines += [f"- `model.safetensors` sha256: `{sha}`"]
    lines += ["", "## Usage", "", "```python", "import zoo", f"model = zoo.create_model({name!r}, pretrained=True).eval()",
              f"tf = zoo.create_transform({name!r})      # resize, crop, normalise -> (3, T, H, W)", "```", "",
              f"Input: clips (B, 3, T, H, W), normalised with mean {list(v.mean)} and std {list(v.std)}; "
              f"sampling `{v.sampling}`: {reg.sampling[v.sampling]}", ""]
    if claims:
        lines += ["## What the papers report (not re-measured here)", "", "| paper | table | views | metrics |",
                  "|---|---|---|---|"]
        for c in claims:
            m = ", ".join(f"{k} {val}" for k, val in c.metrics.items())
            lines.append(f"| {reg.papers[c.paper].short or c.paper} | {c.table} | {c.views} | {m} |")
        lines.append("")
    if labels:
        lines += ["## Classes", "", ", ".join(f"{i}: {n}" for i, n in enumerate(labels["label_names"])), ""]
    lines += ["## Citation", "", "```bibtex", citation(paper), "```", ""]
    return "\n".join(y) + "\n" + "\n".join(lines)


def model_config(name: str, label_names: Optional[Sequence[str]] = None) -> dict:
    """config.json of a variant: what ``create_model("local-dir:...")`` / ``"hf-hub:..."`` rebuild from
    (``arch``, ``kwargs``, ``num_classes``, ``frames``; timm's ``architecture`` / ``num_frames`` too)."""
    from ..version import __version__
    from ..labels import label_names as bundled

    reg = registry()
    v = variant(name)
    if label_names is None:
        label_names = bundled(name)
    return {"name": name, "arch": v.arch, "architecture": v.arch, "family": reg.archs[v.arch].family,
            "num_classes": v.num_classes, "frames": v.frames, "num_frames": v.frames, "kwargs": dict(v.kwargs), "input_size": v.input_size, "mean": list(v.mean),
            "std": list(v.std), "sampling": v.sampling, "views": v.views, "dataset": v.dataset,
            "paper": v.paper, "source": v.source or {}, "zoo_version": __version__,
            **label_fields(label_names, v.num_classes)}
