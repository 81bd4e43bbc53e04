"""Top-1/top-5 of a results table (``python -m engine.eval table RESULTS``): the Parquet file
or folder of parts ``engine.run --results`` writes (engine/pipeline/results_table.py).

The true class is the table's ``label`` column, or ``--label FILE`` / folder names matched
on each row's ``source`` (a shard member's name for ``SHARD#MEMBER``). The ranking is
``topk_index`` as written. A failed item (``error`` set), a row without a label and a
second row for one ``index`` are not scored and are listed by reason, as the other modes
do. The table is read in record batches of the columns used, so memory stays bounded.
"""
from __future__ import annotations

from pathlib import Path

from engine.data.labels import LabelSource
from engine.data.scoring import Accuracy
from engine.data.tar_shards import label_name

COLUMNS = ("index", "source", "label", "topk_index", "topk_name", "error")


def score_results_table(path: str | Path, labels: LabelSource | None) -> tuple[Accuracy, dict[int, str]]:
    """Score every row of the table at ``path``; also the class names it carries by id."""
    import pyarrow.dataset as ds

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"results table {path}: no such file or folder")
    try:
        dataset = ds.dataset(str(path), format="parquet")
        missing = [c for c in COLUMNS if c not in dataset.schema.names]
    except (OSError, ValueError) as e:
        raise ValueError(f"results table {path}: not a readable Parquet table ({e})") from None
    if missing:
        raise ValueError(f"results table {path}: no column(s) {', '.join(missing)} (not an engine.run --results "
                         "table)")
    acc, names, seen = Accuracy(), {}, set()
    for batch in dataset.to_batches(columns=list(COLUMNS)):
        rows = batch.to_pydict()
        for index, source, label, ranked, ranked_names, error in zip(*(rows[c] for c in COLUMNS), strict=True):
            if index in seen:
                acc.skip(source, "a second row for its index")
                continue
            seen.add(index)
            if error is not None:
                acc.skip(source, "failed item")
                continue
            if labels is not None:
                label = labels(label_name(source))
            if label is None:
                acc.skip(source, "no label")
                continue
            names.update(zip(ranked, ranked_names or [], strict=False))
            acc.add(ranked, label)
    return acc, names
