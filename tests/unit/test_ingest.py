"""Ingest on a tiny generated Flipkart-like dataset: catalog, quarantine/flag report, images, split."""
from __future__ import annotations

import csv
import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fkstudy.data.catalog import (CatalogError, Problems, build_catalog, parse_category_tree,
                                  parse_specifications, read_csv_strict, stratified_split,
                                  top_specification_values)
from fkstudy.data.images import inspect_image
from fkstudy.data.ingest import ingest_metrics, run_ingest
from fkstudy.data.params import DataParams

COLUMNS = ["uniq_id", "crawl_timestamp", "product_url", "product_name", "product_category_tree", "pid",
           "retail_price", "discounted_price", "image", "is_FK_Advantage_product", "description",
           "product_rating", "overall_rating", "brand", "product_specifications"]
CATS = ["Watches", "Baby Care", "Kitchen & Dining"]
SUB = {"Watches": "Wrist Watches", "Baby Care": "Baby Bath & Skin", "Kitchen & Dining": "Coffee Mugs"}
N_PER = 6
SEED = 42
BAD_BYTES = "@@NOT_UTF8@@"  # replaced by undecodable bytes when the CSV is written


def _pid(i: int) -> str:
    return hashlib.md5(f"product-{i}".encode()).hexdigest()  # not in CSV order, like the real ids


def make_rows() -> list[dict]:
    rows = []
    for c, cat in enumerate(CATS):
        for j in range(N_PER):
            i = c * N_PER + j
            pid = _pid(i)
            brand = f"Brand{j % 2}"
            rows.append({
                "uniq_id": pid, "crawl_timestamp": "2016-04-30 03:22:56 +0000",
                "product_url": f"http://www.flipkart.com/p/{pid}", "product_name": f"{brand} {cat} item {j}",
                "product_category_tree": f'["{cat} >> {SUB[cat]} >> {brand} {SUB[cat]} >> {brand} item {j}..."]',
                "pid": f"PID{i:04d}", "retail_price": "999", "discounted_price": "499", "image": f"{pid}.jpg",
                "is_FK_Advantage_product": "False", "description": f"Key features of {brand} {cat} item {j}. "
                                                                    f"Buy online at Flipkart.com",
                "product_rating": "No rating available", "overall_rating": "No rating available", "brand": brand,
                "product_specifications": ('{"product_specification"=>[{"key"=>"Brand", "value"=>"%s"}, '
                                           '{"key"=>"Color", "value"=>"Red"}, {"value"=>"1 piece"}]}' % brand),
            })
    return rows


def write_jpeg(path: Path, size=(48, 48), mode="RGB", seed=0) -> None:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path, "JPEG", quality=90)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with no pixel data at all."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


class Dataset:
    """A raw data folder: products.csv + Images/, rows editable before `build()`."""

    def __init__(self, root: Path):
        self.root = root
        self.rows = make_rows()
        self.columns = list(COLUMNS)
        # the `data` section as a dict, editable before `run()` validates it into DataParams
        self.params = dict(raw_dir=str(root), csv_name="products.csv", image_dir="Images", categories=list(CATS),
                           split={"train": 0.6, "val": 0.2, "test": 0.2}, min_per_class=4,
                           max_image_pixels=10_000_000, min_image_side=32, tree_max_depth=3, top_spec_keys=5,
                           top_spec_values=5)

    @property
    def image_dir(self) -> Path:
        return self.root / "Images"

    @property
    def csv_path(self) -> Path:
        return self.root / "products.csv"

    def build(self) -> "Dataset":
        self.image_dir.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(self.columns)
        for r in self.rows:
            w.writerow([r.get(c, "") for c in self.columns])
        self.csv_path.write_bytes(buf.getvalue().encode("utf-8").replace(BAD_BYTES.encode(), b"caf\xe9 \xff\xfe"))
        for i, r in enumerate(self.rows):
            name = r["image"]
            if name and "/" not in name and not (self.image_dir / name).exists():
                write_jpeg(self.image_dir / name, seed=i)
        return self

    def img(self, k: int) -> Path:
        return self.image_dir / self.rows[k]["image"]

    def data_params(self) -> DataParams:
        return DataParams.model_validate(self.params)

    def run(self):
        return run_ingest(self.root, self.data_params(), seed=SEED, n_jobs=1)


@pytest.fixture
def ds(tmp_path) -> Dataset:
    return Dataset(tmp_path / "raw")


def only(problems: pd.DataFrame, kind: str) -> dict:
    hits = problems[problems["kind"] == kind]
    assert len(hits) == 1, f"expected one {kind!r} problem, got:\n{problems.to_string()}"
    return hits.iloc[0].to_dict()


def status_of(result, pid: str) -> str:
    return result.catalog.set_index("id").loc[pid, "image_status"]


# --------------------------------------------------------------------------- the valid dataset

def test_valid_dataset_gives_full_sorted_catalog_without_problems(ds):
    res = ds.build().run()
    cat = res.catalog
    assert res.rows_read == 18 and len(cat) == 18
    assert res.problems.empty
    assert list(cat["id"]) == sorted(r["uniq_id"] for r in ds.rows)
    assert [r["uniq_id"] for r in ds.rows] != sorted(r["uniq_id"] for r in ds.rows)  # sorting did something
    assert cat["id"].is_unique
    assert sorted(cat["category"].unique()) == sorted(CATS)
    assert (cat["category"].value_counts() == N_PER).all()
    assert (cat["image_status"] == "ok").all()
    assert (cat["image_width"] == 48).all() and (cat["image_format"] == "JPEG").all()
    assert set(cat["split"]) == {"train", "val", "test"}
    row = cat.set_index("id").loc[_pid(7)]  # second class, j = 1
    assert row["category"] == "Baby Care" and row["category_l2"] == "Baby Bath & Skin"
    assert row["category_depth"] == 4 and row["csv_row"] == 8
    assert row["name"] == "Brand1 Baby Care item 1" and row["brand"] == "Brand1"
    assert row["n_specifications"] == 3
    m = ingest_metrics(res)
    assert m["products"] == 18 and m["quarantined"] == 0 and m["images_ok"] == 18 and m["categories"] == 3
    assert m["per_class"] == {c: N_PER for c in sorted(CATS)}
    assert sum(m["per_split"].values()) == 18 and m["problems_by_kind"] == {}


def test_split_stays_with_its_id_after_sorting(ds):
    res = ds.build().run()
    ids = pd.Series([r["uniq_id"] for r in ds.rows])
    labels = pd.Series([r["product_category_tree"].split('"')[1].split(" >> ")[0] for r in ds.rows])
    expected = dict(zip(ids, stratified_split(ids, labels, ds.params["split"], SEED)))
    assert dict(zip(res.catalog["id"], res.catalog["split"])) == expected


def test_ingest_is_deterministic(ds):
    ds.build()
    a, b = ds.run(), ds.run()
    pd.testing.assert_frame_equal(a.catalog, b.catalog)


def test_utf8_bom_is_accepted(ds):
    ds.build()
    ds.csv_path.write_bytes(b"\xef\xbb\xbf" + ds.csv_path.read_bytes())
    assert len(ds.run().catalog) == 18


# --------------------------------------------------------------------------- fatal: CatalogError

def test_missing_required_column_names_file_and_column(ds):
    ds.columns.remove("description")
    ds.build()
    with pytest.raises(CatalogError, match=r"products\.csv.*missing required column.*'description'"):
        ds.run()


def test_duplicated_column_name_is_fatal(ds):
    ds.columns.append("brand")
    ds.build()
    with pytest.raises(CatalogError, match=r"duplicated column name.*'brand'"):
        ds.run()


def test_missing_data_dir_says_how_to_provide_it(tmp_path):
    with pytest.raises(CatalogError, match=r"does not exist.*scripts/setup\.sh.*data\.raw_dir"):
        run_ingest(tmp_path / "nowhere", Dataset(tmp_path).data_params(), seed=SEED)


def test_missing_csv(ds):
    ds.build()
    ds.csv_path.unlink()
    with pytest.raises(CatalogError, match=r"products\.csv: CSV not found"):
        ds.run()


def test_empty_picture_folder(ds):
    ds.build()
    for p in ds.image_dir.iterdir():
        p.unlink()
    with pytest.raises(CatalogError, match=r"image folder .*Images is empty"):
        ds.run()


def test_missing_picture_folder(ds):
    ds.params["image_dir"] = "Pictures"
    ds.build()
    with pytest.raises(CatalogError, match=r"image folder .*Pictures does not exist \(data\.image_dir\)"):
        ds.run()


def test_class_below_minimum_is_fatal_and_named(ds):
    ds.rows = [r for r in ds.rows if not (r["product_category_tree"].startswith('["Watches')
                                          and r["pid"] in ("PID0000", "PID0001", "PID0002"))]
    ds.build()
    with pytest.raises(CatalogError, match=r"below data\.min_per_class=4.*'Watches': 3"):
        ds.run()


def test_expected_category_with_no_rows_is_fatal(ds):
    ds.params["categories"] = CATS + ["Computers"]
    ds.build()
    with pytest.raises(CatalogError, match=r"'Computers': 0"):
        ds.run()


def test_quarantine_that_leaves_a_class_too_small_is_fatal(ds):
    ds.params["min_per_class"] = N_PER
    ds.rows[0]["product_name"] = ds.rows[0]["description"] = ""
    ds.build()
    with pytest.raises(CatalogError, match=r"'Watches': 5"):
        ds.run()


# --------------------------------------------------------------------------- quarantined / flagged rows

def test_duplicate_id_quarantines_the_later_row(ds):
    ds.rows[4]["uniq_id"] = ds.rows[1]["uniq_id"]
    ds.rows[4]["product_name"] = "the duplicate"
    ds.build()
    res = ds.run()
    p = only(res.problems, "duplicate_id")
    assert (p["row"], p["id"], p["column"], p["action"]) == (5, ds.rows[1]["uniq_id"], "uniq_id", "quarantined")
    assert "CSV row 2" in p["detail"] and p["file"] == "products.csv"
    assert len(res.catalog) == 17 and res.catalog["id"].is_unique
    assert "the duplicate" not in set(res.catalog["name"])
    assert ingest_metrics(res)["quarantined"] == 1


@pytest.mark.parametrize("bad_id, kind", [("", "missing_id"), ("../etc/passwd", "bad_id"), ("a b", "bad_id")])
def test_bad_or_missing_id_is_quarantined(ds, bad_id, kind):
    ds.rows[3]["uniq_id"] = bad_id
    ds.build()
    res = ds.run()
    p = only(res.problems, kind)
    assert p["row"] == 4 and p["action"] == "quarantined" and p["column"] == "uniq_id"
    assert len(res.catalog) == 17


@pytest.mark.parametrize("blank", ["", "   \t "])
def test_no_name_and_no_description_is_quarantined_only_description_is_flagged(ds, blank):
    ds.rows[2]["product_name"] = ds.rows[2]["description"] = blank   # row 3: nothing to learn from
    ds.rows[8]["description"] = blank                                # row 9: name still there
    ds.rows[13]["product_name"] = blank                              # row 14: description still there
    ds.build()
    res = ds.run()
    q = only(res.problems, "empty_text")
    assert (q["row"], q["id"], q["action"]) == (3, ds.rows[2]["uniq_id"], "quarantined")
    f = only(res.problems, "empty_description")
    assert (f["row"], f["id"], f["column"], f["action"]) == (9, ds.rows[8]["uniq_id"], "description", "flagged")
    g = only(res.problems, "empty_name")
    assert (g["row"], g["column"], g["action"]) == (14, "product_name", "flagged")
    ids = set(res.catalog["id"])
    assert ds.rows[2]["uniq_id"] not in ids
    assert {ds.rows[8]["uniq_id"], ds.rows[13]["uniq_id"]} <= ids
    kept = res.catalog.set_index("id").loc[ds.rows[8]["uniq_id"]]
    assert kept["description"] == "" and kept["name"] == ds.rows[8]["product_name"]
    assert len(res.catalog) == 17


def test_invalid_utf8_quarantines_that_row_naming_the_column(ds):
    ds.rows[3]["description"] = f"Soft {BAD_BYTES} towel"
    ds.rows[5]["product_name"] = "Café crème mug ☕"  # valid non-ASCII UTF-8 is fine
    ds.build()
    assert b"\xff\xfe" in ds.csv_path.read_bytes()
    res = ds.run()
    p = only(res.problems, "invalid_utf8")
    assert (p["row"], p["id"], p["column"], p["action"]) == (4, ds.rows[3]["uniq_id"], "description", "quarantined")
    assert len(res.catalog) == 17 and ds.rows[3]["uniq_id"] not in set(res.catalog["id"])
    assert res.catalog.set_index("id").loc[ds.rows[5]["uniq_id"], "name"] == "Café crème mug ☕"
    assert res.rows_read == 18


def test_invalid_utf8_in_the_id_is_quarantined_and_reportable(ds, tmp_path):
    from fkstudy import files as fio

    ds.rows[3]["uniq_id"] = "abc" + BAD_BYTES
    ds.rows[3]["image"] = "x.jpg"
    ds.build()
    res = ds.run()
    p = only(res.problems, "invalid_utf8")
    assert (p["row"], p["column"], p["action"]) == (4, "uniq_id", "quarantined")
    assert p["id"] == "abccaf\\xe9 \\xff\\xfe"  # bytes shown, not lone surrogates
    fio.write_csv(tmp_path / "problems.csv", res.problems)  # the stage writes this report: must be valid UTF-8
    assert "abccaf\\xe9" in (tmp_path / "problems.csv").read_text(encoding="utf-8")


def test_row_with_wrong_field_count_is_quarantined(ds):
    ds.build()
    lines = ds.csv_path.read_bytes().split(b"\r\n")
    lines[2] = lines[2] + b",extra"
    ds.csv_path.write_bytes(b"\r\n".join(lines))
    res = ds.run()
    p = only(res.problems, "bad_field_count")
    assert p["row"] == 2 and p["action"] == "quarantined" and "16 fields, header has 15" in p["detail"]
    assert len(res.catalog) == 17


def test_unknown_category_is_quarantined(ds):
    ds.rows[6]["product_category_tree"] = '["Jewellery >> Rings >> Gold rings"]'
    ds.build()
    res = ds.run()
    p = only(res.problems, "unknown_category")
    assert (p["row"], p["id"], p["column"], p["action"]) == (7, ds.rows[6]["uniq_id"],
                                                             "product_category_tree", "quarantined")
    assert "'Jewellery'" in p["detail"]
    assert "Jewellery" not in set(res.catalog["category"]) and len(res.catalog) == 17


def test_unparseable_category_tree_is_quarantined(ds):
    ds.rows[0]["product_category_tree"] = "[]"
    ds.build()
    p = only(ds.run().problems, "bad_category_tree")
    assert p["row"] == 1 and p["action"] == "quarantined"


@pytest.mark.parametrize("name", ["../x.jpg", "/etc/passwd.jpg", "sub/x.jpg", "x.exe", "x.jpg;rm -rf"])
def test_photo_name_with_path_is_flagged_and_never_opened(ds, name):
    ds.rows[4]["image"] = name
    ds.build()
    write_jpeg(ds.root / "x.jpg")  # a readable file the traversal would reach
    res = ds.run()
    p = only(res.problems, "bad_image_name")
    assert (p["row"], p["id"], p["column"], p["action"]) == (5, ds.rows[4]["uniq_id"], "image", "flagged")
    row = res.catalog.set_index("id").loc[ds.rows[4]["uniq_id"]]
    assert row["image"] == "" and row["image_status"] != "ok" and row["image_width"] == 0
    assert len(res.catalog) == 18  # the text is kept


# --------------------------------------------------------------------------- images
# (test names avoid the word "image": `pytest -k "not image"` is used to skip the image-stage tests)

def test_truncated_jpeg_is_flagged_product_kept(ds):
    ds.build()
    data = ds.img(2).read_bytes()
    ds.img(2).write_bytes(data[: len(data) // 2])
    res = ds.run()
    pid = ds.rows[2]["uniq_id"]
    hits = res.problems[res.problems["kind"].isin(["image_truncated", "image_unreadable"])]
    assert len(hits) == 1 and hits.iloc[0]["id"] == pid and hits.iloc[0]["action"] == "flagged"
    assert hits.iloc[0]["row"] == 3 and hits.iloc[0]["file"] == ds.rows[2]["image"]
    assert pid in set(res.catalog["id"]) and status_of(res, pid) in ("truncated", "unreadable")
    assert len(res.catalog) == 18 and ingest_metrics(res)["images_ok"] == 17


@pytest.mark.parametrize("content", [b"", b"this is not a picture at all"], ids=["empty", "garbage"])
def test_empty_or_garbage_photo_is_unreadable(ds, content):
    ds.build()
    ds.img(0).write_bytes(content)
    res = ds.run()
    p = only(res.problems, "image_unreadable")
    assert p["id"] == ds.rows[0]["uniq_id"] and status_of(res, p["id"]) == "unreadable"


def test_missing_photo_file_is_flagged(ds):
    ds.build()
    ds.img(9).unlink()
    res = ds.run()
    p = only(res.problems, "image_missing")
    assert (p["row"], p["id"], p["column"], p["action"]) == (10, ds.rows[9]["uniq_id"], "image", "flagged")
    assert status_of(res, p["id"]) == "missing" and len(res.catalog) == 18


def test_unusual_modes_are_flagged_but_ok(ds):
    ds.rows[1]["image"] = ds.rows[1]["image"].replace(".jpg", ".png")
    ds.build()
    write_jpeg(ds.img(0), mode="CMYK")
    Image.new("RGBA", (40, 40), (255, 0, 0, 128)).save(ds.img(1), "PNG")
    write_jpeg(ds.img(2), mode="L")
    res = ds.run()
    expect = {"image_mode_cmyk": 0, "image_mode_alpha": 1, "image_mode_grayscale": 2}
    assert set(res.problems["kind"]) == set(expect)
    for kind, k in expect.items():
        p = only(res.problems, kind)
        assert p["id"] == ds.rows[k]["uniq_id"] and p["action"] == "flagged" and p["row"] == k + 1
        assert status_of(res, p["id"]) == "ok"
    modes = res.catalog.set_index("id")["image_mode"]
    assert [modes[ds.rows[k]["uniq_id"]] for k in range(3)] == ["CMYK", "RGBA", "L"]
    assert (res.catalog["image_status"] == "ok").all()


def test_small_photo_is_flagged_too_small(ds):
    ds.build()
    write_jpeg(ds.img(4), size=(20, 100))
    res = ds.run()
    p = only(res.problems, "image_too_small")
    assert status_of(res, p["id"]) == "too_small" and "data.min_image_side" in p["detail"]


def test_decompression_bomb_header_is_refused_before_decoding(ds, monkeypatch):
    ds.rows[3]["image"] = ds.rows[3]["image"].replace(".jpg", ".png")
    ds.rows[4]["image"] = ds.rows[4]["image"].replace(".jpg", ".png")
    ds.build()
    ds.img(3).write_bytes(png_header_only(5000, 4000))      # 20 Mpx > data.max_image_pixels (10 Mpx)
    ds.img(4).write_bytes(png_header_only(60000, 60000))    # beyond Pillow's own hard limit
    from PIL import PngImagePlugin

    def no_decode(self):  # pragma: no cover - reaching it is the failure
        raise AssertionError("decoded a decompression bomb")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decode)
    res = ds.run()
    bombs = res.problems[res.problems["kind"] == "image_too_large"].set_index("row")
    assert sorted(bombs.index) == [4, 5]
    assert "5000x4000" in bombs.loc[4, "detail"] and "data.max_image_pixels" in bombs.loc[4, "detail"]
    for k in (3, 4):
        assert status_of(res, ds.rows[k]["uniq_id"]) == "too_large"
    assert len(res.catalog) == 18


def test_max_pixels_param_is_the_limit(tmp_path):
    p = tmp_path / "big.jpg"
    write_jpeg(p, size=(200, 100))
    assert inspect_image(p, max_pixels=20_000, min_side=1).status == "ok"
    chk = inspect_image(p, max_pixels=19_999, min_side=1)
    assert chk.status == "too_large" and (chk.width, chk.height) == (200, 100)


# --------------------------------------------------------------------------- split

def test_stratified_split_60_20_20_exact_per_class():
    ids = pd.Series([f"p{i:05d}" for i in range(7 * 150)])
    labels = pd.Series([f"class{i % 7}" for i in range(7 * 150)])
    split = stratified_split(ids, labels, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=42)
    counts = pd.crosstab(labels, split)
    assert (counts["train"] == 90).all() and (counts["val"] == 30).all() and (counts["test"] == 30).all()
    assert split.value_counts().to_dict() == {"train": 630, "val": 210, "test": 210}
    again = stratified_split(ids, labels, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=42)
    assert (split == again).all()
    other = stratified_split(ids, labels, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=43)
    assert (split != other).any()


def test_stratified_split_ignores_series_index():
    ids = pd.Series([f"p{i}" for i in range(40)], index=range(100, 140))
    labels = pd.Series(["a", "b"] * 20, index=range(100, 140))
    split = stratified_split(ids, labels, {"train": 0.5, "val": 0.25, "test": 0.25}, seed=0)
    assert len(split) == 40 and split.notna().all()
    assert pd.crosstab(labels.values, split.values).to_dict("index") == {
        "a": {"test": 5, "train": 10, "val": 5}, "b": {"test": 5, "train": 10, "val": 5}}


# --------------------------------------------------------------------------- parsers

@pytest.mark.parametrize("value, levels", [
    ('["Watches >> Wrist Watches >> X"]', ["Watches", "Wrist Watches", "X"]),
    ('["  Baby Care>>Bath  >> "]', ["Baby Care", "Bath"]),
    ('["A >> >> B"]', ["A", "B"]),
    ('"Home Decor & Festive Needs >> Showpieces"', ["Home Decor & Festive Needs", "Showpieces"]),
    ('["Kitchen & Dining >> Mugs >> Rockmantra Mug...', ["Kitchen & Dining", "Mugs", "Rockmantra Mug..."]),
    ('["Computers"]', ["Computers"]),
    ('["A >> B", "C >> D"]', ["A", "B"]),
])
def test_parse_category_tree(value, levels):
    assert parse_category_tree(value) == levels


@pytest.mark.parametrize("value", ["", "   ", "[]", "[1, 2]", '[" >> "]', '{"a": 1}'])
def test_parse_category_tree_rejects(value):
    with pytest.raises(ValueError):
        parse_category_tree(value)


def test_parse_specifications():
    s = ('{"product_specification"=>[{"key"=>"Brand", "value"=>"Elegance"}, {"key"=>"Type", "value"=>"Eyelet"},'
         ' {"value"=>"1 Jug 2 Glass Set"}, {"key"=>"Other Dimensions", "value"=>"Dia - 2\\", Height - 4\\", 75 g"}]}')
    pairs = parse_specifications(s)
    assert pairs[:3] == [("Brand", "Elegance"), ("Type", "Eyelet"), (None, "1 Jug 2 Glass Set")]
    assert len(pairs) == 4 and pairs[3][0] == "Other Dimensions"
    assert pairs[3][1].startswith("Dia - 2") and pairs[3][1].endswith("75 g")  # escaped quotes stay inside


@pytest.mark.parametrize("value", ['{"product_specification"=>nil}', '{"product_specification" => nil}', "",
                                   "garbage"])
def test_parse_specifications_empty(value):
    assert parse_specifications(value) == []


def test_top_specification_values():
    specs = pd.Series([
        [("Brand", "A"), ("Color", "Red"), (None, "loose value")],
        [("Brand", "A"), ("Color", "Blue")],
        [("Brand", "B"), ("Type", "Mug")],
        [(" Brand ", " A "), ("Color", "Red")],
        [],
    ])
    t = top_specification_values(specs, top_keys=2, top_values=1)
    assert t.to_dict("records") == [
        dict(key="Brand", value="A", count=3, percentage=75.0, total_occurrences=4),
        dict(key="Color", value="Red", count=2, percentage=66.67, total_occurrences=3),
    ]
    full = top_specification_values(specs, top_keys=5, top_values=5)
    assert set(full["key"]) == {"Brand", "Color", "Type"}
    brand = full[full["key"] == "Brand"].set_index("value")["count"].to_dict()
    assert brand == {"A": 3, "B": 1}
    assert full.loc[full["key"] == "Brand", "percentage"].tolist() == [75.0, 25.0]
    empty = top_specification_values(pd.Series([[], [(None, "x")]]), 5, 5)
    assert empty.empty and list(empty.columns) == ["key", "value", "count", "percentage", "total_occurrences"]


def test_problems_frame_is_sorted_and_typed():
    p = Problems()
    p.add(row=3, id="b", column="image", kind="image_missing", action="flagged", detail="")
    p.add(row=None, id=None, column="*", kind="zzz", action="quarantined", detail="")
    p.add(row=1, id="a", column="uniq_id", kind="duplicate_id", action="quarantined", detail="")
    f = p.frame()
    assert f["row"].tolist()[0] is pd.NA and f["row"].tolist()[1:] == [1, 3]
    assert str(f["row"].dtype) == "Int64"
    assert p.quarantined_ids() == {"a"} and p.quarantined_rows() == {1}


def test_build_catalog_without_expected_categories_uses_what_is_there(tmp_path):
    ds = Dataset(tmp_path)
    ds.build()
    problems = Problems()
    raw = read_csv_strict(ds.csv_path, problems)
    cat = build_catalog(raw, expected_categories=[], min_per_class=2, problems=problems)
    assert sorted(cat["category"].unique()) == sorted(CATS) and problems.rows == []
