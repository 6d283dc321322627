"""Batch prediction: `python -m fkstudy predict --input products.csv --output predictions.csv` — reading the
CSV (line numbers, whole-file errors), bad rows reported and the rest predicted, exit codes 0 / 3 / 2,
the model loaded once, an atomic output — on the tiny bundle of test_predict with stand-in encoders."""
from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest

from fkstudy import __main__ as cli_main
from fkstudy.predict import batch, registry
from fkstudy.predict.model import PredictInputError, Predictor, output_columns

from .test_predict import CLASSES, bundle_dir, fake_encoders, photo  # noqa: F401  (fixtures)


def write(path, text: str, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


# ------------------------------------------------------------------------------------ reading
def test_records_keep_their_csv_line_and_relative_images_follow_the_csv(tmp_path):
    (tmp_path / "photos").mkdir()
    src = write(tmp_path / "p.csv", 'id,name,description,image\n'
                                    'a1,Watch,"steel\nstrap, 3 ATM",photos/w.jpg\n'
                                    '\n'
                                    'a2, Towel ,,\n'
                                    'a3,Mug,"ceramic",/abs/m.jpg,extra\n'
                                    'a4,Lamp\n')
    p = batch.read_products(src)
    assert p.lines == [2, 5, 6, 7]          # the header is line 1; a quoted newline makes record 1 span 2-3
    assert p.has_id and list(p.frame["id"]) == ["a1", "a2", "a3", "a4"]
    assert list(p.frame["name"]) == ["Watch", "Towel", "Mug", "Lamp"]
    assert p.frame.loc[0, "description"] == "steel\nstrap, 3 ATM"
    assert list(p.frame["image"]) == [str(tmp_path / "photos/w.jpg"), "", "/abs/m.jpg", ""]
    assert p.errors[:2] == ["", ""] and "5 fields, the header has 4" in p.errors[2] and p.errors[3] == ""


def test_header_variants_bom_and_description_only(tmp_path):
    p = batch.read_products(write(tmp_path / "p.csv", "\ufeff Description \nsteel watch\n"))
    assert list(p.frame.columns) == ["name", "description", "image"] and not p.has_id
    assert list(p.frame["description"]) == ["steel watch"] and list(p.frame["name"]) == [""]


@pytest.mark.parametrize("text, message", [
    ("title,description\nx,y\n", r"unknown column\(s\) \['title'\]"),
    ("name,name\nx,y\n", r"column\(s\) \['name'\] given twice"),
    ("image,id\na.jpg,1\n", "no name or description column"),
    ("name,description\n", "no product rows"),
    ("", "empty file"),
    ('name,description\n"unterminated,x\n', None),  # csv reads to the end: one odd record, no crash
])
def test_whole_file_problems(tmp_path, text, message):
    src = write(tmp_path / "p.csv", text)
    if message is None:
        assert len(batch.read_products(src).lines) == 1
        return
    with pytest.raises(PredictInputError, match=message):
        batch.read_products(src)


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(PredictInputError, match="file not found"):
        batch.read_products(tmp_path / "nope.csv")
    with pytest.raises(PredictInputError, match="not UTF-8"):
        batch.read_products(write(tmp_path / "l1.csv", "name\ncaf\u00e9\n", encoding="latin-1"))


# ------------------------------------------------------------------------------------ predicting
def test_predict_products_keeps_order_and_reports_bad_rows(tmp_path, bundle_dir, fake_encoders):  # noqa: F811
    photo(tmp_path / "ok.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"not a photo")
    src = write(tmp_path / "p.csv", "name,description,image\n"
                                    "Analog watch,steel,ok.jpg\n"
                                    ",,\n"
                                    "Baby towel,,missing.jpg\n"
                                    "Mug,,junk.jpg\n"
                                    "Laptop,15 inch,\n"
                                    "a,b,c,d\n")
    p = Predictor.from_paths(bundle_dir, tmp_path)
    out = batch.predict_products(p, batch.read_products(src), top_k=2, batch_size=2)
    assert list(out.columns) == ["line", *output_columns(2)]
    assert list(out["line"]) == [2, 3, 4, 5, 6, 7]
    assert list(out["error"]) == ["", "name and description are both empty; give at least one of them",
                                  "image not found: missing.jpg", "not an image: junk.jpg", "",
                                  "4 fields, the header has 3 (an unquoted comma?)"]
    assert list(out["modality"]) == ["text+image", "", "", "", "text", ""]
    good = out["error"] == ""
    assert out.loc[good, "category_1"].isin(CLASSES).all() and out.loc[~good, "probability_1"].isna().all()
    # chunking does not change a prediction
    whole = batch.predict_products(p, batch.read_products(src), top_k=2, batch_size=100)
    pd.testing.assert_frame_equal(out, whole)


# ------------------------------------------------------------------------------------ the command
@pytest.fixture
def loaded(monkeypatch, bundle_dir, fake_encoders, tmp_path):  # noqa: F811
    """registry.load_predictor replaced by the tiny bundle; counts how often a model is loaded."""
    calls = []

    def load(uri, cache_dir):
        calls.append(uri)
        return Predictor.from_paths(bundle_dir, tmp_path)

    monkeypatch.setattr(registry, "load_predictor", load)
    return calls


def run_cli(*args):
    return cli_main.main(["predict", "--model-uri", "models:/tiny@champion", *args])


def test_cli_batch_all_good_exit_0(tmp_path, loaded, capsys):
    src = write(tmp_path / "p.csv", "id,name,description\n" + "".join(f"p{i},Watch {i},steel\n" for i in range(7)))
    dst = tmp_path / "out" / "pred.csv"
    assert run_cli("--input", str(src), "--output", str(dst), "--batch-size", "3", "--top", "2") == 0
    assert loaded == ["models:/tiny@champion"]  # one model load for every row
    out = pd.read_csv(dst, dtype={"id": str}, keep_default_na=False)
    assert list(out.columns) == ["line", "id", *output_columns(2)] and len(out) == 7
    assert list(out["id"]) == [f"p{i}" for i in range(7)] and (out["error"] == "").all()
    assert np.all(out["probability_1"].astype(float) >= out["probability_2"].astype(float))
    err = capsys.readouterr().err
    assert "predicted 7 of 7 products" in err and "\r" not in err  # not a terminal: no progress bar
    assert [f.name for f in dst.parent.iterdir()] == ["pred.csv"]  # no temporary file left


def test_cli_batch_some_rows_fail_exit_3(tmp_path, loaded, capsys):
    src = write(tmp_path / "p.csv", "name,description,image\nWatch,steel,\n,,\nTowel,,gone.jpg\nMug,,\n")
    dst = tmp_path / "pred.csv"
    assert run_cli("--input", str(src), "--output", str(dst)) == 3
    out = pd.read_csv(dst, keep_default_na=False)
    assert list(out["line"]) == [2, 3, 4, 5] and list(out["error"] != "") == [False, True, True, False]
    assert out.loc[1, "probability_1"] == "" and out.loc[1, "category_1"] == ""
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == ["line 3: name and description are both empty; give at least one of them",
                       "line 4: image not found: gone.jpg"]
    assert "predicted 2 of 4 products" in err[2] and "2 failed" in err[2]
    assert run_cli("--input", str(src), "--output", str(dst), "--quiet") == 3
    assert len(capsys.readouterr().err.splitlines()) == 2   # --quiet: the failed rows only


@pytest.mark.parametrize("make, extra, message", [
    (lambda d: d / "absent.csv", [], "absent.csv: file not found"),
    (lambda d: write(d / "p.csv", "title\nx\n"), [], "unknown column(s) ['title']"),
    (lambda d: write(d / "p.csv", "name\nx\n"), ["--name", "x"], "leave out ['--name']"),
    (lambda d: write(d / "p.csv", "name\nx\n"), ["--json"], "leave out ['--json']"),
])
def test_cli_batch_whole_input_errors_exit_2_and_leave_the_old_output(tmp_path, loaded, capsys, make, extra, message):
    dst = write(tmp_path / "pred.csv", "previous\n")
    assert run_cli("--input", str(make(tmp_path)), "--output", str(dst), *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert dst.read_text() == "previous\n" and not loaded  # failed before loading the model


def test_cli_batch_option_errors(tmp_path, loaded, capsys):
    src = write(tmp_path / "p.csv", "name\nx\n")
    assert run_cli("--input", str(src)) == 2
    assert "--input needs --output" in capsys.readouterr().err
    assert run_cli("--input", str(src), "--output", str(src)) == 2
    assert "must differ" in capsys.readouterr().err
    assert run_cli("--name", "x", "--output", str(tmp_path / "o.csv")) == 2
    assert "--output goes with --input" in capsys.readouterr().err


def test_progress_bar_on_a_terminal(tmp_path, bundle_dir, fake_encoders, capsys):  # noqa: F811
    src = write(tmp_path / "p.csv", "name\n" + "watch\n" * 5)
    p = Predictor.from_paths(bundle_dir, tmp_path)
    batch.predict_products(p, batch.read_products(src), batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert "predict" in err and "5/5" in err
    batch.predict_products(p, batch.read_products(src), batch_size=2, progress=False)
    assert capsys.readouterr().err == ""


def test_output_is_plain_csv(tmp_path):
    out = pd.DataFrame({"line": [2, 3], "category_1": ["Watches", ""], "probability_1": [0.91234567, np.nan],
                        "error": ["", "bad"]})
    batch.write_predictions(out, tmp_path / "o.csv")
    rows = list(csv.reader(io.StringIO((tmp_path / "o.csv").read_text())))
    assert rows == [["line", "category_1", "probability_1", "error"], ["2", "Watches", "0.912346", ""],
                    ["3", "", "", "bad"]]
