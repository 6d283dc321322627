"""Stage text_terms@<method>: the terms that weigh most in each category, as a table and as word clouds, for a text
representation whose columns are terms (registry entries with a vocabulary: BoW, TF-IDF). Reads the feature file's
own vocabulary (its meta), so it shows exactly the features the later stages use."""
import _bootstrap  # noqa: F401

from fkstudy import files, paths
from fkstudy.data.catalog import load_catalog
from fkstudy.errors import StudyError
from fkstudy.plots import text as text_plots
from fkstudy.runtime import log, run_stage, stage_argument, start_stage


def main(argv=None) -> None:
    (method,) = stage_argument(argv, [None], "python stages/text_terms.py <text method>")  # start_stage: a dvc.yaml stage
    stage = start_stage(f"text_terms@{method}")
    path = paths.features("text", method)
    X, ids, meta = files.load_features(path)
    vocabulary = meta.get("vocabulary")
    if not vocabulary or len(vocabulary) != X.shape[1]:
        raise StudyError(f"{path}: no vocabulary of {X.shape[1]} terms in its meta: text_terms needs a representation "
                         "whose columns are terms (bow, tfidf)")
    catalog = load_catalog(paths.CATALOG, features={path: ids})
    labels = catalog.set_index("id").loc[list(ids), "category"].to_numpy()
    table = text_plots.top_terms(X, vocabulary, labels)
    files.write_csv(paths.plots("text_features", f"{method}_top_terms.csv"), table)
    files.save_figure(text_plots.top_terms_figure(table, f"Top {method.upper()} terms per category"),
                      paths.plots("text_features", f"{method}_top_terms.png"))
    files.save_figure(text_plots.word_clouds(X, vocabulary, labels, f"{method.upper()} word clouds", stage.params.seed),
                      paths.plots("text_features", f"{method}_wordclouds.png"))
    stage.write_timings("text_terms", method)
    log.info("%s: top terms of %d categories", method, table["category"].nunique())


if __name__ == "__main__":
    run_stage(main)
