"""Stage clean_text: catalog -> one row per product with raw text, lemmas and stems."""
import _bootstrap  # noqa: F401
import pandas as pd

from fkstudy import io
from fkstudy.text.clean import Cleaner, clean_frame, cleaning_metrics, stopword_list
from fkstudy.runtime import start_stage, timed

params = start_stage("clean_text")
p = params["clean_text"]
catalog = pd.read_parquet("data/interim/catalog.parquet")
cleaner = Cleaner(stopword_list(p["stopwords"], p["extra_stopwords"]), p["min_token_len"], p["keep_digits"])
timing: dict = {}
with timed("clean_text", timing, "seconds"):
    cleaned = clean_frame(catalog, p["field"], cleaner)
io.write_parquet("data/interim/text.parquet", cleaned)
io.write_json("metrics/clean_text.json", {**cleaning_metrics(cleaned), **timing, "field": p["field"]})
io.write_csv("plots/clean_text/examples.csv", cleaned[["id", "raw", "lemmas", "stems"]].head(10))
