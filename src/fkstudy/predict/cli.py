"""`python -m fkstudy predict` — one product, or a CSV file of products, through the registered model.

  one product:  --name ... [--description ...] [--image PATH] [--json]
  a CSV file:   --input products.csv --output predictions.csv [--batch-size 64] [--quiet]

The model (default `models:/<register.model_name>@<register.alias>` from params.yaml, else
models:/flipkart-product-classifier@champion) is loaded once from the study's tracking store. One product:
the top-3 categories with their probabilities on stdout. A CSV file (columns name and/or description,
optional image and id; see fkstudy.predict.batch): one output row per product with its CSV line,
top-k categories and probabilities, modality, note and error; each failed row is listed on stderr as
`line N: <why>`, and a progress bar is drawn on stderr when it is a terminal (not with --quiet).

Exit status: 0 every product predicted; 3 the output was written but some rows failed (their `error`
column says why); 2 nothing predicted — a problem with the input as a whole (missing or unreadable file,
no name/description column, unknown column), with the one product, or no model — with one line
`error: ...` on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

EXIT_USAGE = 2
EXIT_SOME_ROWS_FAILED = 3
LISTED_ROWS = 50  # failed rows listed on stderr; the output file has all of them


def default_model_uri() -> str:
    from . import registry

    try:
        from ..params import load_params

        reg = load_params().register
        return registry.model_uri(reg.model_name, reg.alias)
    except Exception:  # outside the repository, or params without a register section
        return registry.model_uri()


def add_arguments(p: argparse.ArgumentParser) -> None:
    one = p.add_argument_group("one product")
    one.add_argument("--name", default=None, help="product name (name and/or description is required)")
    one.add_argument("--description", default=None, help="product description")
    one.add_argument("--image", default=None, help="path to the product photo (optional: text only without it)")
    one.add_argument("--json", action="store_true", help="print JSON instead of a table")
    many = p.add_argument_group("a CSV file of products")
    many.add_argument("--input", default=None, metavar="CSV",
                      help="products: columns name and/or description, optional image (path, relative to the "
                           "CSV's folder) and id")
    many.add_argument("--output", default=None, metavar="CSV", help="where to write the predictions (atomically)")
    many.add_argument("--batch-size", type=int, default=64, help="products per model call (default 64)")
    many.add_argument("--quiet", action="store_true", help="no progress bar and no summary line on stderr")
    p.add_argument("--model-uri", default=None,
                   help="MLflow model URI (default: models:/<register.model_name>@<register.alias> from params.yaml)")
    p.add_argument("--top", type=int, default=3, help="how many categories (default 3)")


def check_inputs(args) -> None:
    """Fail fast, before loading any model: empty text, missing or unreadable image, options that clash."""
    from .model import PredictInputError

    if args.top < 1:
        raise PredictInputError(f"--top must be >= 1, got {args.top}")
    single = [f"--{k}" for k in ("name", "description", "image") if getattr(args, k) is not None]
    if args.input is not None:
        if single or args.json:
            raise PredictInputError(f"--input predicts a CSV file: leave out {single + ['--json'] * args.json}")
        if not args.output:
            raise PredictInputError("--input needs --output (the predictions CSV to write)")
        if Path(args.output).resolve() == Path(args.input).resolve():
            raise PredictInputError("--output must differ from --input")
        if args.batch_size < 1:
            raise PredictInputError(f"--batch-size must be >= 1, got {args.batch_size}")
        return
    if args.output is not None:
        raise PredictInputError("--output goes with --input (a CSV file of products)")
    if not (args.name or "").strip() and not (args.description or "").strip():
        raise PredictInputError("--name and --description are both empty; give at least one of them "
                                "(or --input products.csv)")
    if args.image is not None:
        path = Path(args.image)
        if not str(args.image).strip():
            raise PredictInputError("--image is empty; leave it out for a text-only prediction")
        if not path.is_file():
            raise PredictInputError(f"image {path}: file not found")
        if not os.access(path, os.R_OK):
            raise PredictInputError(f"image {path}: not readable (permission denied)")


def render(row: dict, top: int, uri: str) -> str:
    lines = [f"model: {uri}", f"input: {row['modality']}" + (f" ({row['note']})" if row["note"] else "")]
    for k in range(1, top + 1):
        if f"category_{k}" in row:
            lines.append(f"{k}. {row[f'category_{k}']:<30} {row[f'probability_{k}']:.3f}")
    return "\n".join(lines)


def _single(predictor, args, uri: str) -> int:
    from .model import PredictInputError

    frame = {"name": args.name or "", "description": args.description or "", "image": args.image or ""}
    row = predictor.predict(frame, top_k=args.top).iloc[0].to_dict()
    if row["error"]:
        raise PredictInputError(row["error"])
    if args.json:
        top = [{"category": row[f"category_{k}"], "probability": round(float(row[f"probability_{k}"]), 6)}
               for k in range(1, args.top + 1) if f"category_{k}" in row]
        print(json.dumps({"model_uri": uri, "modality": row["modality"], "note": row["note"], "top": top}, indent=2))
    else:
        print(render(row, args.top, uri))
    return 0


def _report(out, args) -> int:
    failed = out[out["error"] != ""]
    for line, error in list(zip(failed["line"], failed["error"]))[:LISTED_ROWS]:
        print(f"line {line}: {error}", file=sys.stderr)
    if len(failed) > LISTED_ROWS:
        print(f"... and {len(failed) - LISTED_ROWS} more failed rows (the error column of {args.output})",
              file=sys.stderr)
    if not args.quiet:
        print(f"predicted {len(out) - len(failed)} of {len(out)} products -> {args.output}"
              + (f" ({len(failed)} failed: see their error column)" if len(failed) else ""), file=sys.stderr)
    return EXIT_SOME_ROWS_FAILED if len(failed) else 0


def run(args) -> int:
    import logging

    from . import batch, registry
    from .bundle import BundleError
    from .model import PredictInputError, UnservableError

    logging.getLogger("fkstudy").setLevel(logging.WARNING)
    for var in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):  # one clean answer; libraries draw no bars
        os.environ.setdefault(var, "1")   # (our own bar passes `disable` explicitly, which wins)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = args.model_uri or default_model_uri()
    try:
        check_inputs(args)
        products = batch.read_products(args.input) if args.input is not None else None  # before the model
        with tempfile.TemporaryDirectory(prefix="fkstudy-model-") as tmp:
            predictor = registry.load_predictor(uri, tmp)  # once, for every product
            if products is None:
                return _single(predictor, args, uri)
            out = batch.predict_products(predictor, products, top_k=args.top, batch_size=args.batch_size,
                                         progress=not args.quiet and sys.stderr.isatty())
        try:
            batch.write_predictions(out, args.output)
        except OSError as exc:
            raise PredictInputError(f"{args.output}: cannot write ({exc.strerror or exc})") from None
    except (PredictInputError, registry.RegistryError, BundleError, UnservableError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    return _report(out, args)
