"""Stage clean_text: catalog -> per product and per field (name, description, both): raw text, lemmas, stems."""
import _bootstrap  # noqa: F401

from fkstudy import io
from fkstudy.data.catalog import load_catalog
from fkstudy.runtime import start_stage, timed, write_timings
from fkstudy.text.clean import FIELDS, Cleaner, clean_all_fields, cleaning_metrics, field_view, stopword_list

params = start_stage("clean_text")
p = params["clean_text"]
catalog = load_catalog("data/interim/catalog.parquet")
cleaner = Cleaner(stopword_list(p["stopwords"], p["extra_stopwords"]), p["min_token_len"], p["keep_digits"])
timing: dict = {}
with timed("clean_text", timing, "seconds"):
    cleaned = clean_all_fields(catalog, cleaner)
io.write_parquet("data/interim/text.parquet", cleaned)
io.write_json("metrics/clean_text.json", {f: cleaning_metrics(field_view(cleaned, f)) for f in FIELDS})
write_timings("clean_text", {"products": len(cleaned), **timing})
io.write_csv("plots/clean_text/examples.csv", cleaned[["id", "raw_name", "lemmas_name", "stems_name"]].head(10))
