"""`ffaa eval`: score forensic reports and explanations.

Modules (import the one you need; this package imports nothing at import time):

- `detection`: pure metric functions (ACC, balanced ACC, ROC-AUC, AP, EER, calibration,
  per-set spread, bootstrap intervals, threshold sweep); numpy only.
- `labels`, `predictions`, `matching`: read ground truth and reports, match them by path.
- `detection_eval`: the `ffaa eval detection` flow and its result dataclasses; `detection_report`:
  its Markdown and output files.
- `plots`: ROC, PR, confusion matrix, reliability diagram, score histograms (matplotlib).
- `ensemble`: several detectors' probabilities, threshold rule and majority vote.
- `explanation`: CSS, BLEU, ROUGE-L, METEOR, CIDEr, BERTScore, structure and consistency.
- `judge`: rubric scoring by a judge model behind a one-method protocol.
- `benchmarks`, `run`: OW-FFA-Bench folders, and running the assistant over them.
- `results`: JSON output, provenance and `ffaa eval compare`.
"""

# `eval/` sits at the top of the checkout but is the package `ffaa.eval`. With the checkout's root
# on sys.path (`python app.py`, `python -c` there) it could also load as plain `eval`, and each of
# its modules a second time beside `ffaa.eval.*`, with classes of their own: refuse that name.
if __name__ != "ffaa.eval":
    raise ImportError(f"import ffaa.eval, not {__name__}: eval/ is installed as the package ffaa.eval",
                      name=__name__)
