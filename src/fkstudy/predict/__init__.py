"""Serving the fusion model: the saved bundle (models/fusion/), a predictor from raw inputs
(name, description, image path -> top-k categories, or a per-row error), batch prediction from a CSV
file, the MLflow pyfunc wrapper registered by the `register` stage, who may move the production alias
(promotion), and the `python -m fkstudy predict` / `promote` command lines.

The predict path runs torch only (MiniLM or the packaged USE for text, EfficientNet-Lite0 for the
photo) with the same preprocessing functions the pipeline used to make the training features.
"""
