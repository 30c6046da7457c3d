"""``edgepose info``: what edgepose sees in a model file.

Prints the file's format (judged by content), the backend that loads it, the input and output
tensors, and the model spec that inference will use (layout, strides, normalisation, which
output is the heatmap and which the PAF) as JSON. ``--json`` prints all of it as one JSON object.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict

from ._common import add_model_options, open_model

HELP = "show a model's format, tensors, spec and backend"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("info", help=HELP, description=__doc__.split("\n\n")[0])
    p.add_argument("model", metavar="MODEL", help="model file (.onnx, .etlt, .engine)")
    add_model_options(p, model_flag=False)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return p


def _shape(shape: Any) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def describe(args: argparse.Namespace) -> Dict[str, Any]:
    """The facts ``info`` prints, as a JSON-serialisable dict."""
    from ..formats import detect_format
    from ..formats.detect import file_sha256

    fmt = detect_format(args.model)
    with open_model(args, args.model) as model:
        backend = model.backend
        return {
            "model": str(args.model),
            "format": fmt.value,
            "sha256": file_sha256(args.model),  # what model.edgepose.json's model_sha256 records
            "backend": {"name": backend.name, "version": backend.version},
            "inputs": [t.to_dict() for t in backend.inputs],
            "outputs": [t.to_dict() for t in backend.outputs],
            "spec": model.spec.to_dict(),
        }


def run(args: argparse.Namespace) -> int:
    facts = describe(args)
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    print(f"model:    {facts['model']}")
    print(f"format:   {facts['format']}")
    print(f"sha256:   {facts['sha256']}")
    print(f"backend:  {facts['backend']['name']} {facts['backend']['version']}")
    for kind in ("inputs", "outputs"):
        print(f"{kind}:")
        for t in facts[kind]:
            print(f"  {t['name']:<24} {t['dtype']:<8} {_shape(t['shape'])}")
    print("spec:")
    print(json.dumps(facts["spec"], indent=2))
    return 0
