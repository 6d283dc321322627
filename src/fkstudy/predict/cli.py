"""`python -m fkstudy predict --name ... [--description ...] [--image PATH] [--json] [--model-uri URI]`

Loads the registered model (default `models:/<register.model_name>@<register.alias>` from params.yaml,
else models:/flipkart-product-classifier@champion) from the study's tracking store and prints the
top-3 categories with their probabilities. Errors in the input or a missing model print one line
`error: ...` on stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

EXIT_USAGE = 2


def default_model_uri() -> str:
    from . import registry

    try:
        from ..config import load_params

        reg = load_params()["register"]
        return registry.model_uri(reg["model_name"], reg["alias"])
    except Exception:  # outside the repository, or params without a register section
        return registry.model_uri()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default="", help="product name (name and/or description is required)")
    p.add_argument("--description", default="", help="product description")
    p.add_argument("--image", default=None, help="path to the product photo (optional: text only without it)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--model-uri", default=None,
                   help="MLflow model URI (default: models:/<register.model_name>@<register.alias> from params.yaml)")
    p.add_argument("--top", type=int, default=3, help="how many categories to print (default 3)")


def check_inputs(args) -> None:
    """Fail fast, before loading any model: empty text, missing or unreadable image."""
    from .model import PredictInputError

    if not (args.name or "").strip() and not (args.description or "").strip():
        raise PredictInputError("--name and --description are both empty; give at least one of them")
    if args.image is not None:
        path = Path(args.image)
        if not str(args.image).strip():
            raise PredictInputError("--image is empty; leave it out for a text-only prediction")
        if not path.is_file():
            raise PredictInputError(f"image {path}: file not found")
        if not os.access(path, os.R_OK):
            raise PredictInputError(f"image {path}: not readable (permission denied)")
    if args.top < 1:
        raise PredictInputError(f"--top must be >= 1, got {args.top}")


def render(row: dict, top: int, uri: str) -> str:
    lines = [f"model: {uri}", f"input: {row['modality']}" + (f" ({row['note']})" if row["note"] else "")]
    for k in range(1, top + 1):
        if f"category_{k}" in row:
            lines.append(f"{k}. {row[f'category_{k}']:<30} {row[f'probability_{k}']:.3f}")
    return "\n".join(lines)


def run(args) -> int:
    import logging

    from . import registry
    from .bundle import BundleError
    from .model import PredictInputError, UnservableError

    logging.getLogger("fkstudy").setLevel(logging.WARNING)
    for var in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):  # one clean answer on stdout, no bars on stderr
        os.environ.setdefault(var, "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = args.model_uri or default_model_uri()
    try:
        check_inputs(args)
        frame = {"name": args.name, "description": args.description, "image": args.image or ""}
        with tempfile.TemporaryDirectory(prefix="fkstudy-model-") as tmp:
            predictor = registry.load_predictor(uri, tmp)
            out = predictor.predict(frame, top_k=args.top)
    except (PredictInputError, registry.RegistryError, BundleError, UnservableError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    row = out.iloc[0].to_dict()
    if args.json:
        top = [{"category": row[f"category_{k}"], "probability": round(float(row[f"probability_{k}"]), 6)}
               for k in range(1, args.top + 1) if f"category_{k}" in row]
        print(json.dumps({"model_uri": uri, "modality": row["modality"], "note": row["note"], "top": top}, indent=2))
    else:
        print(render(row, args.top, uri))
    return 0
