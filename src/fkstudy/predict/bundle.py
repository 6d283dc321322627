"""The fusion bundle: what the `fusion` stage saves in models/fusion/ and every predictor loads.

    fusion.json          format, classes, the selected candidate (mode, text weight), the head files
                         with their sha256, and how the features were made (text / image extractor
                         settings from the feature files' meta, so the predictor rebuilds them exactly)
    <head>_head.skops    the fitted scikit-learn pipelines (text, image, concat), skops format

No pickle: skops files are loaded with an explicit list of trusted types, and only scikit-learn's
own types are ever trusted; anything else in a file is refused.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .. import files
from ..errors import StudyError
from ..labels import top_classes

BUNDLE_FILE = "fusion.json"
FORMAT = 1


class BundleError(StudyError, ValueError):
    """The bundle (models/fusion/) is missing, incomplete, altered or from an incompatible version."""


@dataclass
class Bundle:
    config: dict     # the content of fusion.json
    models: dict     # head name -> fitted sklearn pipeline
    directory: Path

    @property
    def selected(self) -> dict:
        return self.config["selected"]

    @property
    def classes(self) -> list:
        return self.config["classes"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_bundle(directory: str | Path, models: dict, config: dict) -> dict:
    """Write the heads (skops) and fusion.json; older head files in `directory` are removed first."""
    import skops.io as sio

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*_head.skops"):
        old.unlink()
    heads = {}
    for name, model in sorted(models.items()):
        path = directory / f"{name}_head.skops"
        with files.atomic_path(path, keep_suffix=False) as tmp:
            tmp.write_bytes(canonical_skops(sio.dumps(model)))
        heads[name] = {"file": path.name, "sha256": _sha256(path)}
    full = {"format": FORMAT, **config, "heads": heads}
    files.write_json(directory / BUNDLE_FILE, full)
    return full


def canonical_skops(data: bytes) -> bytes:
    """A skops archive made byte-reproducible: skops names its arrays and memo entries after Python object ids
    (`"__id__": 139938272528384`, `139938272528384.npy`), which differ in every process, and stamps the current
    time into each zip entry. The ids are renumbered in order of first appearance in schema.json (the same object
    keeps one number, so the memo still resolves) and the entries get a fixed time (files.reproducible_zip)."""
    import io
    import re
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        schema = z.read("schema.json").decode("utf-8")
    numbers: dict[str, str] = {}

    def renumber(match: re.Match) -> str:
        head, old, tail = (match.group(1), match.group(2), "") if match.group(2) else match.group(3, 4, 5)
        return f"{head}{numbers.setdefault(old, str(len(numbers)))}{tail}"

    schema = re.sub(r'("__id__":\s*)(\d+)|(")(\d+)(\.npy")', renumber, schema)

    def edit(name: str, content: bytes) -> tuple[str, bytes]:
        if name == "schema.json":
            return name, schema.encode("utf-8")
        stem = name[:-len(".npy")] if name.endswith(".npy") else None
        if stem is not None and stem.isdigit():
            if stem not in numbers:
                raise BundleError(f"skops archive: array {name} is not referenced by its schema")
            return f"{numbers[stem]}.npy", content
        return name, content

    return files.reproducible_zip(data, edit)


def load_skops(path: str | Path):
    """A skops file trusting scikit-learn's own types only (refuses anything else, never unpickles)."""
    import skops.io as sio

    path = Path(path)
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # not a zip / not a skops file
        raise BundleError(f"{path}: not a readable skops file ({type(exc).__name__}: {exc})") from None
    foreign = [t for t in untrusted if not t.startswith("sklearn.")]
    if foreign:
        raise BundleError(f"{path}: refuses to load types from outside scikit-learn: {foreign}")
    try:
        return sio.load(path, trusted=untrusted)
    except Exception as exc:
        raise BundleError(f"{path}: cannot load ({type(exc).__name__}: {exc})") from None


def load_bundle(directory: str | Path, hint: str = "run the fusion stage (`dvc repro fusion`)") -> Bundle:
    directory = Path(directory)
    cfg_path = directory / BUNDLE_FILE
    if not cfg_path.is_file():
        raise BundleError(f"{cfg_path}: fusion bundle not found; {hint}")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{cfg_path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        got = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise BundleError(f"{cfg_path}: bundle format {got!r}, this code reads format {FORMAT}; {hint}")
    for key in ("classes", "selected", "heads", "text", "image"):
        if key not in config:
            raise BundleError(f"{cfg_path}: key '{key}' missing; {hint}")
    models = {}
    for name, entry in config["heads"].items():
        path = directory / entry["file"]
        if not path.is_file():
            raise BundleError(f"{path}: head '{name}' listed in {BUNDLE_FILE} is missing; {hint}")
        if _sha256(path) != entry["sha256"]:
            raise BundleError(f"{path}: sha256 differs from the one recorded in {BUNDLE_FILE} (file altered); {hint}")
        models[name] = load_skops(path)
        if top_classes(models[name].classes_) != list(config["classes"]):   # a sub-category head answers its tops
            raise BundleError(f"{path}: classes {list(models[name].classes_)} differ from {config['classes']}")
    return Bundle(config, models, directory)
