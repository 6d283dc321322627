"""Serving the fusion model: the saved bundle (models/fusion/), a predictor from raw inputs
(name, description, image path -> top-k categories), the MLflow pyfunc wrapper registered by the
`register` stage, and the `python -m fkstudy predict` command line.

The predict path runs torch only (MiniLM or the packaged USE for text, EfficientNet-Lite0 for the
photo) with the same preprocessing functions the pipeline used to make the training features.
"""
