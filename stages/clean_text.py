"""Stage clean_text: catalog -> per product and per field (name, description, both): raw text, lemmas, stems."""
import _bootstrap  # noqa: F401

from fkstudy import files, paths
from fkstudy.data.catalog import load_catalog
from fkstudy.runtime import run_stage, start_stage
from fkstudy.text.clean import FIELDS, Cleaner, clean_all_fields, cleaning_metrics, field_view, stopword_list


def main() -> None:
    stage = start_stage("clean_text")
    p = stage.params.clean_text
    catalog = load_catalog(paths.CATALOG)
    cleaner = Cleaner(stopword_list(p.stopwords, p.extra_stopwords), p.min_token_len, p.keep_digits)
    with stage.timed("clean_text", "seconds"):
        cleaned = clean_all_fields(catalog, cleaner)
    files.write_parquet(paths.TEXT, cleaned)
    files.write_json(paths.metrics("clean_text"), {f: cleaning_metrics(field_view(cleaned, f)) for f in FIELDS})
    stage.write_timings("clean_text", products=len(cleaned))
    files.write_csv(paths.plots("clean_text", "examples.csv"),
                    cleaned[["id", "raw_name", "lemmas_name", "stems_name"]].head(10))


if __name__ == "__main__":
    run_stage(main)
