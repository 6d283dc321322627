"""The catalogue-scale path without a cluster: the streaming CSV reader (lines, byte offsets), the chunk plan and
its re-reading, the engine's order checks and worker environment, the feature assembly (id order, failures),
the streamed predictions file, and the batching claims: a chunk's features are the pipeline functions' bytes
(one chunk = the whole set; images: chunks of whole batches), and scoring by chunks writes the bytes of
`predict --input` on the whole file. The Ray engine on a real cluster: tests/integration/test_ray.py."""
from __future__ import annotations

import csv
import io
import json

import torch  # noqa: F401  (torch before anything that could load TensorFlow)
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fkstudy import numerics
from fkstudy.errors import StudyError
from fkstudy.predict import batch, records
from fkstudy.predict.model import PredictInputError
from fkstudy.scale import catalog, engine, features, scoring
from fkstudy.scale.params import check_chunking

from .test_predict import bundle_dir, fake_encoders, photo  # noqa: F401  (fixtures)

TRICKY = ('\ufeffid,name,description,image\r\n'
          'a1,Watch,"steel\nstrap, 3 ATM",w.jpg\r\n'
          '\r\n'
          'a2, Towel ,,\r'
          'a3,Mug,"ceramic",/abs/m.jpg,extra\n'
          'a4,Lamp,"caf\u00e9 \u2615, warm",\n'
          'a5,"Quoted ""name""","multi\r\nline\rdesc",\n'
          '\n'
          'a6,Pen,,\n')


def write(path, text: str):
    path.write_bytes(text.encode("utf-8"))
    return path


def reference(text: str) -> list[tuple[int, list[str]]]:
    """(start line, fields) of each non-blank record, as predict read them before: the whole text through csv."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    out, last = [], 0
    for fields in reader:
        start, last = last + 1, reader.line_num
        if fields and not (len(fields) == 1 and not fields[0].strip()):
            out.append((start, fields))
    return out


# ------------------------------------------------------------------------------------------------ records
@pytest.mark.parametrize("block", [records.BLOCK, 1, 2, 3, 7])
def test_records_are_the_csv_module_on_the_whole_text(tmp_path, monkeypatch, block):
    """Any line ending (\\n, \\r\\n, \\r), quoted newlines, a BOM, multi-byte characters, blank lines; read by
    blocks of any size (a \\r\\n or a character split between two blocks)."""
    monkeypatch.setattr(records, "BLOCK", block)
    path = write(tmp_path / "p.csv", TRICKY)
    got = list(records.records(path))
    assert [(r.line, r.fields) for r in got] == reference(TRICKY)
    data = path.read_bytes()
    for r in got:  # each record ends at its byte offset: the text up to there holds it and every record before
        assert reference(data[:r.end].decode("utf-8"))[-1] == (r.line, r.fields)
    again = list(records.records(path, got[1].end, got[4].end, got[1].end_line))
    assert [(r.line, r.fields) for r in again] == [(r.line, r.fields) for r in got[2:5]]


def test_records_errors_name_the_byte_and_the_line(tmp_path):
    bad = tmp_path / "l1.csv"
    bad.write_bytes(b"name\ncaf\xe9\n")
    with pytest.raises(PredictInputError, match=r"not UTF-8 text \(invalid continuation byte at byte 8\)"):
        list(records.records(bad))
    huge = tmp_path / "huge.csv"
    huge.write_bytes(b"name\nok\n" + b"x" * (csv.field_size_limit() + 1) + b"\n")
    with pytest.raises(PredictInputError, match="not a readable CSV at line 3 .*field larger than field limit"):
        list(records.records(huge))


# ------------------------------------------------------------------------------------------------ plan
@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 100])
def test_chunks_reread_are_the_whole_file(tmp_path, chunk_rows):
    path = write(tmp_path / "p.csv", TRICKY)
    plan = catalog.plan(path, chunk_rows)
    whole = batch.read_products(path)
    assert plan.rows == len(whole.lines) == 6 and plan.good == 5 and plan.has_id
    assert all(c.good == chunk_rows for c in plan.chunks[:-1]) and 1 <= plan.chunks[-1].good <= chunk_rows
    parts = [catalog.products(json.loads(json.dumps(catalog.read_chunk(plan, i)))) for i in range(len(plan.chunks))]
    assert sum((p.lines for p in parts), []) == whole.lines == [2, 5, 6, 7, 8, 12]
    assert sum((p.errors for p in parts), []) == whole.errors
    frame = pd.concat([p.frame for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(frame, whole.frame.astype(object), check_dtype=False)
    assert catalog.Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_a_chunk_holds_chunk_rows_readable_records(tmp_path):
    rows = ["id,name"] + [f"p{i},item {i}" + (",extra" if i % 3 == 0 else "") for i in range(20)]
    plan = catalog.plan(write(tmp_path / "p.csv", "\n".join(rows) + "\n"), 4)
    assert [c.good for c in plan.chunks] == [4, 4, 4, 1] and sum(c.rows for c in plan.chunks) == 20
    assert plan.good == 13


@pytest.mark.parametrize("text, message", [
    ("name,description\nx,y\n", "no id column"),
    ("id,name\na,x\n,y\n", "line 3: empty id"),
    ("id,name\na,x\nb,y\na,z\n", "line 4: id 'a' already on line 2"),
])
def test_feature_jobs_need_unique_ids(tmp_path, text, message):
    path = write(tmp_path / "p.csv", text)
    with pytest.raises(catalog.CatalogError, match=message):
        catalog.plan(path, 2, unique_ids=True)
    catalog.plan(path, 2)  # scoring copies ids, it does not key on them


@pytest.mark.parametrize("text, message", [
    ("", "empty file"), ("id,name\n", "no product rows"), ("title\nx\n", r"unknown column\(s\) \['title'\]")])
def test_whole_file_problems(tmp_path, text, message):
    with pytest.raises(catalog.CatalogError, match=message):
        catalog.plan(write(tmp_path / "p.csv", text), 2)
    with pytest.raises(catalog.CatalogError, match="catalogue file not found"):
        catalog.plan(tmp_path / "nope.csv", 2)


def test_a_file_changed_during_the_job_is_refused(tmp_path):
    path = write(tmp_path / "p.csv", "id,name\na,x\nb,y\nc,z\n")
    plan = catalog.plan(path, 2)
    write(path, "id,name\na,x\nb,\"y\nc\",z\n")
    with pytest.raises(catalog.CatalogError, match="the file changed during the job"):
        catalog.read_chunk(plan, 0)


def test_chunk_rows_hold_whole_batches():
    check_chunking(64, 32, "x")
    with pytest.raises(StudyError, match="scale.chunk_rows=100 is not a multiple of text_features.bert.batch_size=32"):
        check_chunking(100, 32, "text_features.bert.batch_size")


# ------------------------------------------------------------------------------------------------ engine
class Counting:
    """A worker: how many times it was built (the model is loaded once per worker), chunk -> its ids."""

    built = 0

    def __init__(self, tag: str):
        type(self).built += 1
        self.tag = tag

    def __call__(self, payload: dict) -> dict:
        return {"ids": json.dumps(payload["columns"]["id"]), "tag": self.tag}


def test_local_engine_builds_the_worker_once_and_keeps_the_order(tmp_path):
    path = write(tmp_path / "p.csv", "id,name\n" + "".join(f"p{i},n{i}\n" for i in range(7)))
    plan = catalog.plan(path, 3)
    Counting.built = 0
    out = list(engine.run(len(plan.chunks), lambda i: catalog.read_chunk(plan, i), Counting, ("t",),
                          engine.Settings("local", "", 2, 1)))
    assert Counting.built == 1 and [r["chunk"] for r in out] == [0, 1, 2]
    assert sum((json.loads(r["ids"]) for r in out), []) == [f"p{i}" for i in range(7)]


@pytest.mark.parametrize("chunks, message", [
    ([0, 2], "chunk 1 lost"), ([0, 1, 1], "chunk 1 returned twice"), ([0, 1], "1 of 3 chunks never came back")])
def test_every_chunk_comes_back_once_in_order(chunks, message):
    with pytest.raises(engine.EngineError, match=message):
        list(engine.in_order(iter({"chunk": c} for c in chunks), 3))
    assert [r["chunk"] for r in engine.in_order(iter({"chunk": c} for c in range(3)), 3)] == [0, 1, 2]


def test_ray_workers_get_the_stage_process_environment():
    env = engine.worker_env(3)
    assert {k: env[k] for k in numerics.pinned_env()} == numerics.pinned_env()
    assert env[numerics.MODE_VAR] == numerics.mode() and env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert all(env[v] == "3" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"))
    assert engine.PACKAGE_DIR.name == "fkstudy" and (engine.PACKAGE_DIR / "scale" / "engine.py").is_file()


def test_a_workers_study_error_is_found_in_rays_wrapping():
    inner = catalog.CatalogError("p.csv line 3: empty id")

    class Wrapped(Exception):
        def __init__(self):
            super().__init__("RayTaskError")
            self.cause = RuntimeError("UserCodeException")
            self.cause.__cause__ = inner

    assert engine._study_error(Wrapped()) is inner
    plain = ValueError("x")
    assert engine._study_error(plain) is plain


# ------------------------------------------------------------------------------------------------ features
def result(chunk: int, ids: list[str], X: np.ndarray, failed=()) -> dict:
    return {"chunk": chunk, "ids": json.dumps(ids), "X": X.astype(np.float32).tobytes(), "dim": X.shape[1],
            "failed": json.dumps(list(failed))}


def test_assemble_puts_rows_in_id_order_with_their_failures():
    X, ids, failed = features.assemble([result(0, ["b", "c"], np.array([[2.0, 2], [3, 3]])),
                                        result(1, [], np.zeros((0, 2)), [[4, "d", "image not found: d.jpg"]]),
                                        result(2, ["a"], np.array([[1.0, 1]]))])
    assert ids.tolist() == ["a", "b", "c"] and X.tolist() == [[1, 1], [2, 2], [3, 3]] and X.dtype == np.float32
    assert failed == [[4, "d", "image not found: d.jpg"]]
    with pytest.raises(StudyError, match="chunk 1: 3-d features, the others are 2-d"):
        features.assemble([result(0, ["a"], np.zeros((1, 2))), result(1, ["b"], np.zeros((1, 3)))])
    with pytest.raises(StudyError, match=r"no product could be encoded \(1 failed; first: line 4: no image\)"):
        features.assemble([result(0, [], np.zeros((0, 2)), [[4, "d", "no image"]])])


def test_only_raw_text_encoders_and_torch_backbones(tmp_path):
    from fkstudy.image.registry import IMAGE
    from fkstudy.text.registry import TEXT

    assert features.text_methods() == ("bert", "mpnet", "mpnet_name", "use")
    assert features.image_methods() == ("efficientnet_lite0", "efficientnet_lite2")
    p = TEXT["bert"].params.model_validate({"field": "both", "input": "lemmas", "model_dir": "", "max_length": 32,
                                            "batch_size": 8, "precision": "float32"})
    with pytest.raises(StudyError, match="encodes raw text only"):
        features.check_method("text", "bert", p)
    with pytest.raises(StudyError, match="Keras backbones would need TensorFlow"):
        features.check_method("image", "vgg16", IMAGE["vgg16"].params)
    with pytest.raises(StudyError, match="not available on the catalogue path"):
        features.check_method("text", "tfidf", p)


def test_one_chunk_is_the_pipelines_text_features_and_other_chunks_stay_close(tmp_path):
    """MiniLM through the catalogue worker: one chunk holding every product = the text_features stage's function
    (encoders.bert) on the same texts, byte for byte; chunks of 4 sort and pad other batches: a bound."""
    from fkstudy.registry import Context
    from fkstudy.text import clean, encoders
    from fkstudy.text.registry import TEXT

    long = " ".join(["soft cotton towel, machine washable, quick dry, pack of four in assorted colours"] * 6)
    names = ["Analog watch", "Baby romper", "Ceramic coffee mug with lid", "LED desk lamp", "Cotton towel set",
             "Steel water bottle 1 litre", "Wall clock", "Laptop sleeve 15 inch neoprene, black"]
    descs = ["steel strap, 3 ATM", "", "microwave safe", "", long, "", "quartz", long[:150]]
    lines = "".join(f'p{i},"{n}","{d}"\n' for i, (n, d) in enumerate(zip(names, descs)))
    path = write(tmp_path / "p.csv", "id,name,description\n" + lines)
    params = {"field": "both", "input": "raw", "model_dir": "", "max_length": 64, "batch_size": 2,
              "precision": "float32"}
    p = TEXT["bert"].params.model_validate(params)
    torch.set_num_threads(1)
    ref, _ = encoders.bert([clean.select_text(n, d, "both") for n, d in zip(names, descs)], p,
                           Context(ids=list(range(8)), n_jobs=1))
    worker = features.TextWorker("bert", params, str(tmp_path), 1)

    def run(chunk_rows):
        plan = catalog.plan(path, chunk_rows, unique_ids=True)
        return features.assemble(worker(catalog.read_chunk(plan, i)) | {"chunk": i} for i in range(len(plan.chunks)))

    X, ids, _ = run(8)
    assert ids.tolist() == [f"p{i}" for i in range(8)] and X.tobytes() == ref.astype(np.float32).tobytes()
    bounds = {k: float(np.abs(run(k)[0] - ref).max()) for k in (2, 4, 6)}
    print(f"MiniLM, chunks of k products vs one chunk of 8, max |difference|: {bounds}")
    assert max(bounds.values()) < 1e-5


def test_the_kept_use_encoder_is_the_pipelines_use(tmp_path):
    """The catalogue worker (and the predictor) keep the packaged USE loaded: same batches, same bytes as the
    text_features stage's function, and the weights load once."""
    from fkstudy.registry import Context
    from fkstudy.text import encoders
    from fkstudy.text.registry import TEXT

    params = {"field": "name", "input": "raw", "tfhub_handle": "", "batch_size": 3}
    names = ["Analog watch", "Baby romper", "Ceramic mug", "LED lamp", "Cotton towel", "Steel bottle", "Clock"]
    ref, _ = encoders.use(names, TEXT["use"].params.model_validate(params), Context(ids=list(range(7)), n_jobs=1))
    worker = features.TextWorker("use", params, str(tmp_path), 1)
    payload = {"chunk": 0, "lines": list(range(2, 9)), "errors": [""] * 7, "has_id": True,
               "columns": {"name": names, "description": [""] * 7, "image": [""] * 7, "id": [f"u{i}" for i in range(7)]}}
    out = worker(payload)
    assert np.frombuffer(out["X"], np.float32).tobytes() == ref.astype(np.float32).tobytes()
    net = worker.encoder._net
    worker(payload)
    assert net is not None and worker.encoder._net is net


def test_image_chunks_of_whole_batches_are_the_pipelines_image_features(tmp_path):
    """EfficientNet-Lite0 through the catalogue worker, chunks of 4 photos in batches of 2 = the deep_features
    stage's function (torch_backbone.extract) on the same squares in batches of 2, byte for byte; a photo that
    is missing is a failure, not a row."""
    from fkstudy.image.cache import resized
    from fkstudy.image.preprocess import PrepConfig, process_image
    from fkstudy.image.torch_backbone import extract, recorded_settings
    from fkstudy.image.weights import WeightsPolicy

    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (48 + 8 * i, 64, 3), dtype=np.uint8)).save(tmp_path / f"{i}.jpg")
    rows = "".join(f"p{i},item {i},{i}.jpg\n" for i in range(8)) + "p8,lost,gone.jpg\n"
    path = write(tmp_path / "p.csv", "id,name,image\n" + rows)
    weights = features.probe_weights("efficientnet_lite0", str(tmp_path / "weights"))
    settings = {**recorded_settings("efficientnet_lite0", {"precision": "float32", "normalization": "inception"}),
                "sha256": weights["sha256"]}
    cache = {"size": 64, "aspect": "pad", "jpeg_draft": True}
    worker = features.ImageWorker("efficientnet_lite0", settings, cache, 48, 40_000_000, str(tmp_path / "weights"), 1, 2)
    plan = catalog.plan(path, 4, unique_ids=True)
    X, ids, failed = features.assemble(worker(catalog.read_chunk(plan, i)) | {"chunk": i}
                                       for i in range(len(plan.chunks)))
    assert ids.tolist() == [f"p{i}" for i in range(8)] and failed == [[10, "p8", "image not found: gone.jpg"]]
    cfg = PrepConfig(size=64, aspect="pad", max_pixels=40_000_000, jpeg_draft=True)
    squares = resized(np.stack([process_image(tmp_path / f"{i}.jpg", cfg)[0] for i in range(8)]), 48)
    ref, _ = extract("efficientnet_lite0", squares, settings, batch_size=2,
                     policy=WeightsPolicy(dir=str(tmp_path / "weights"), allow_random_init=False, allow_download=False))
    assert X.tobytes() == ref.astype(np.float32).tobytes()


# ------------------------------------------------------------------------------------------------ scoring
def test_scoring_by_chunks_writes_predict_inputs_bytes(tmp_path, bundle_dir, fake_encoders):  # noqa: F811
    """predict_products chunk by chunk, appended by scoring.write = predict_products on the whole file written
    by `predict --input` (write_predictions), with unreadable records and missing photos among the chunks."""
    from fkstudy.predict.model import Predictor

    photo(tmp_path / "ok.jpg")
    rows = []
    for i in range(23):
        image = "ok.jpg" if i % 4 == 0 else ("gone.jpg" if i % 7 == 0 else "")
        rows.append(f'q{i},"Analog watch {i}","steel, {i} ATM",{image}' + (",extra" if i % 5 == 3 else ""))
    path = write(tmp_path / "p.csv", "id,name,description,image\n" + "\n".join(rows) + "\n")
    predictor = Predictor.from_paths(bundle_dir, tmp_path)
    whole = tmp_path / "whole.csv"
    batch.write_predictions(batch.predict_products(predictor, batch.read_products(path), batch_size=4), whole)
    plan = catalog.plan(path, 8)
    scorer = object.__new__(scoring.Scorer)   # Scorer without unpacking an MLflow archive: the same predictor
    scorer.predictor, scorer.top_k, scorer.batch_size = predictor, 3, 4
    totals = scoring.write((scorer(catalog.read_chunk(plan, i)) for i in range(len(plan.chunks))),
                           tmp_path / "chunks.csv")
    assert (tmp_path / "chunks.csv").read_bytes() == whole.read_bytes()
    out = pd.read_csv(whole, dtype=str, keep_default_na=False)
    assert totals["rows"] == 23 and totals["failed"] == (out["error"] != "").sum() > 0
    assert sum(totals["modality"].values()) == 23 - totals["failed"]


def test_the_predictions_file_is_replaced_only_when_complete(tmp_path):
    target = write(tmp_path / "out.csv", "old\n")
    ok = {"header": "a\n", "csv": "1\n", "rows": 1, "failed": 0,
          "summary": json.dumps({"modality": {"text": 1}, "category_1": {"x": 1}, "confident": 0})}

    def broken():
        yield ok
        raise engine.EngineError("chunk 1 lost")

    with pytest.raises(engine.EngineError):
        scoring.write(broken(), target)
    assert target.read_text() == "old\n" and list(tmp_path.iterdir()) == [target]
    assert scoring.write(iter([ok, ok]), target)["rows"] == 2 and target.read_text() == "a\n1\n1\n"
