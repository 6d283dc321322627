"""The catalogue-scale path: representations and batch scoring over a products CSV of any size, in this process
or on a Ray cluster (docs/scaling.md "Scaling to the catalogue").

    params     the `scale` section: catalogue file, engine (local | ray), Ray address, workers, chunk size
    catalog    the CSV cut into chunks of whole records (byte ranges, line numbers): the unit of work
    engine     one job = read a chunk where the file is + a worker that loads its model once; local or Ray Data
    features   text encoders / torch backbones over the chunks -> one .npz (ids, X, meta) in id order
    scoring    the registered MLflow model over the chunks -> the `predict --input` CSV, streamed
"""
