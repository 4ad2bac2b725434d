"""`ffaa eval ...`: score reports and explanations.

  detection     verdicts and forgery scores against labels (ACC, AUC, AP, EER, sACC, plots)
  ensemble      several detectors' probabilities: threshold rule and majority vote
  explanations  explanation text against references (CSS, BLEU, ROUGE-L, METEOR, CIDEr...)
  judge         explanation quality scored by a judge model on prompts/judge.yaml
  run           analyse a benchmark folder, then score it
  compare       two result JSONs side by side

Nothing heavy is imported until a subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from ..errors import FfaaError


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate reports, explanations and benchmarks",
                       description=__doc__.split("\n\n")[1] if __doc__ else None,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    evsub = p.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND", required=True)
    _detection(evsub)
    _ensemble(evsub)
    _explanations(evsub)
    _judge(evsub)
    _run(evsub)
    _compare(evsub)


# -- arguments ---------------------------------------------------------------------------------


def _score_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scoring")
    g.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for 95%% intervals (0: none; default 1000)")
    g.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    g.add_argument("--bootstrap-seed", type=int, default=0, help="bootstrap seed (default 0)")
    g.add_argument("--bins", type=int, default=10, help="calibration bins (default 10)")
    g.add_argument("--no-plots", action="store_true", help="write no PNG plots")


def _detection(sub) -> None:
    p = sub.add_parser("detection", help="score verdicts and forgery scores against labels",
                       description="Match reports to labels by path, aggregate faces per image, and compute "
                                   "ACC, balanced ACC, recalls, precision/F1, ROC-AUC, AP, EER, ECE, per-set ACC "
                                   "and sACC, easy/hard and per-type accuracy, bootstrap intervals, a threshold sweep.")
    p.add_argument("--reports", required=True, metavar="JSONL", help="reports.jsonl (or plain JSONL predictions)")
    p.add_argument("--labels", required=True, metavar="PATH",
                   help="benchmark folder (<set>/<set>.json), a <set>.json, or CSV/JSONL with id,label[,set][,type]")
    p.add_argument("--out", type=Path, metavar="DIR", help="write detection.json/.md, items.jsonl and plots here")
    p.add_argument("--id-field", default="id", help="id key of plain prediction records (default id)")
    _score_args(p)
    p.set_defaults(func=run_detection)


def _ensemble(sub) -> None:
    p = sub.add_parser("ensemble", help="several detectors: threshold rule and majority vote",
                       description="Each detector says fake iff P > threshold; the ensemble takes the majority. "
                                   "From a table of probabilities (TABLE), or from a real run (--reports: "
                                   "detect.jsonl of `ffaa detect`, reports.jsonl of `ffaa batch --detectors`) "
                                   "with accuracy, recall, bACC, AUC and seconds per file, and a cross-validated "
                                   "logistic-regression fusion beside the vote.")
    p.add_argument("table", nargs="?", metavar="TABLE",
                   help="JSON (threshold, detectors, items with probabilities) or CSV id,label,<detector>...")
    p.add_argument("--reports", metavar="JSONL", help="a run's detect.jsonl or reports.jsonl instead of a table")
    p.add_argument("--labels", metavar="PATH",
                   help="with --reports: true labels (benchmark folder, CSV/JSONL id,label) when the run has none")
    p.add_argument("--threshold", type=float, default=None,
                   help="overrides the table's threshold (with --reports: default 0.70, the talk's rule)")
    p.add_argument("--tie", choices=("real", "fake"), default="real",
                   help="verdict on an exact tie of votes (default real: a tie is no majority for fake)")
    p.add_argument("--out", type=Path, metavar="DIR", help="write ensemble.json/.md here")
    p.set_defaults(func=run_ensemble)


def _text_args(p: argparse.ArgumentParser, references_required: bool) -> None:
    p.add_argument("--predictions", required=True, metavar="JSONL", help="reports.jsonl or plain JSONL")
    p.add_argument("--references", required=references_required, metavar="JSONL",
                   help="JSONL: id and text (a string or a list of strings); repeated ids add references"
                        + ("" if references_required else "; without it only the reference-free checks run"))
    g = p.add_argument_group("fields of plain JSONL")
    g.add_argument("--id-field", default="id", help="prediction id key (default id)")
    g.add_argument("--text-field", default="text", help="prediction text key (default text)")
    g.add_argument("--ref-id-field", default="id", help="reference id key (default id)")
    g.add_argument("--ref-text-field", default="text", help="reference text key (default text)")
    p.add_argument("--compare", choices=("explanation", "full"), default="explanation",
                   help="explanation: description + reasoning only (default); full: the whole answer")


def _explanations(sub) -> None:
    p = sub.add_parser("explanations", help="score explanation texts against references",
                       description="CSS, BLEU-1..4, ROUGE-L, METEOR, CIDEr, BERTScore, structure completeness "
                                   "and verdict-reasoning consistency.")
    _text_args(p, references_required=False)
    p.add_argument("--tokenizer", choices=("ptb", "simple", "none"), default="ptb",
                   help="for BLEU/ROUGE-L/METEOR/CIDEr: ptb (pycocoevalcap, Java; default), simple (Python), none")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts a Java process)")
    p.add_argument("--no-css", action="store_true", help="skip CSS")
    p.add_argument("--css-model", type=Path, metavar="DIR", help="sentence-transformers model folder "
                   "(default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("--no-bertscore", action="store_true", help="skip BERTScore")
    p.add_argument("--bertscore-model", type=Path, metavar="DIR", help="transformers model folder "
                   "(default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("--bertscore-layer", type=int, default=None, help="layer (default: the model's last)")
    p.add_argument("--out", type=Path, metavar="DIR", help="write explanations.json/.md here")
    p.set_defaults(func=run_explanations)


def _judge(sub) -> None:
    from .common import add_model_args

    p = sub.add_parser("judge", help="score explanations with a judge model (prompts/judge.yaml)",
                       description="Each prediction is graded on the rubric's criteria; answers that do not parse "
                                   "are counted as failures, never as scores. Choose the judge with --judge "
                                   "MODULE:FACTORY (a factory returning an object with judge(prompt) -> str, or a "
                                   "function prompt -> str) or with the model options (--model/--demo).")
    _text_args(p, references_required=False)
    p.add_argument("--labels", metavar="PATH", help="true labels (as for detection) when the texts carry none")
    p.add_argument("--judge", metavar="MODULE:FACTORY", help="build the judge by calling FACTORY() from MODULE")
    p.add_argument("--judge-max-new-tokens", type=int, default=64, help="answer length of a model judge")
    p.add_argument("--limit", type=int, default=None, help="judge only the first N items")
    p.add_argument("--out", type=Path, metavar="DIR", help="write judge.json/.md here")
    add_model_args(p)
    p.set_defaults(func=run_judge, model=None)


def _run(sub) -> None:
    from .common import add_analysis_args, add_model_args

    p = sub.add_parser("run", help="analyse a benchmark folder, then score it",
                       description="BENCH_DIR holds <set>/<set>.json and <set>/imgs/*. Reports go to "
                                   "DIR/reports/reports.jsonl (resumable with --resume), scores to DIR.")
    p.add_argument("bench", metavar="BENCH_DIR")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in DIR/reports")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(p)
    add_analysis_args(p)
    _score_args(p)
    p.set_defaults(func=run_benchmark_command)


def _compare(sub) -> None:
    p = sub.add_parser("compare", help="two result JSONs side by side",
                       description="Every number of two `ffaa eval` result files, with B - A, and their provenance.")
    p.add_argument("a", metavar="A", help="a result JSON written by --out (detection.json, explanations.json...)")
    p.add_argument("b", metavar="B", help="the result JSON to compare with A")
    p.add_argument("--changed-only", action="store_true", help="list only the numbers that differ")
    p.set_defaults(func=run_compare)


# -- entry points ------------------------------------------------------------------------------


def _options(args: argparse.Namespace):
    from ..eval.detection_eval import EvaluationOptions

    if args.bootstrap < 0:
        raise FfaaError("--bootstrap must be 0 or more")
    if not 0 < args.confidence < 1:
        raise FfaaError("--confidence must be between 0 and 1")
    if args.bins < 1:
        raise FfaaError("--bins must be at least 1")
    return EvaluationOptions(n_bootstrap=args.bootstrap, confidence=args.confidence, seed=args.bootstrap_seed,
                             calibration_bins=args.bins)


def _print_written(paths) -> None:
    for path in paths:
        print(f"wrote {path}", file=sys.stderr)


def run_detection(args: argparse.Namespace) -> int:
    from ..eval.detection_eval import evaluate_detection
    from ..eval.detection_report import to_markdown, write_outputs
    from ..eval.label_sources import load_labels
    from ..eval.predictions import load_predictions
    from ..eval.results import input_file

    options = _options(args)
    predictions = load_predictions(args.reports, args.id_field)
    labels = load_labels(args.labels)
    if not labels.labels:
        raise FfaaError(f"{args.labels}: no valid labels ({labels.rows} rows, {labels.invalid} invalid)"
                        + (f"; first problem: {labels.problems[0]}" if labels.problems else ""))
    evaluation = evaluate_detection(predictions, labels, options,
                                    inputs=(input_file("reports", args.reports), input_file("labels", args.labels)))
    if evaluation.result.coverage.images_matched == 0:
        raise FfaaError(_no_match_message(predictions, labels))
    print(to_markdown(evaluation.result), end="")  # like ensemble, explanations and judge: always
    if args.out:
        _print_written(write_outputs(evaluation, args.out, plots=not args.no_plots))
    return 0


def _no_match_message(predictions, labels) -> str:
    """Every metric would be n/a: say so, with one report path and one label id to compare."""
    paths = list(dict.fromkeys(face.path for face in predictions.faces))
    return (f"no report matched a label ({len(paths)} predicted images, {len(labels.labels)} labels), e.g. report "
            f"path {paths[0]!r} and label id {labels.labels[0].id!r}; a label id must be the end of a report path "
            "(label DPF/imgs/1.png matches /data/DPF/imgs/1.png) or --id-field must name the right key")


def _headline(r) -> str:
    from ..eval.detection_report import num, pct

    h, s = r.hard, r.score
    return (f"{r.coverage.images_matched} images: ACC {pct(h.accuracy)}, balanced ACC {pct(h.balanced_accuracy)}, "
            f"recall fake {pct(h.recall_fake)}, recall real {pct(h.recall_real)}, AUC {num(s.auc)}, AP {num(s.ap)}, "
            f"EER {num(s.eer)}" + (f", sACC {100 * r.spread.sacc:.2f}" if r.spread else "") + _left_out(r.coverage))


def _left_out(c) -> str:
    """What the headline's numbers leave out (undecided images, labels without a report)."""
    parts = [f"{c.undecided} undecided"] if c.undecided else []
    parts += [f"{c.labels_without_prediction} labelled without a report"] if c.labels_without_prediction else []
    parts += [f"{c.labels_invalid} invalid label rows"] if c.labels_invalid else []
    return f" ({', '.join(parts)}; see the report's coverage)" if parts else ""


def run_ensemble(args: argparse.Namespace) -> int:
    from ..types import Verdict

    if (args.table is None) == (args.reports is None):
        raise FfaaError("give a TABLE or --reports JSONL (one of them)")
    if args.labels and not args.reports:
        raise FfaaError("--labels goes with --reports (a table carries its own labels)")
    if args.reports:
        from ..detectors.vote import VoteRule
        from ..eval.ensemble_runs import evaluate_run
        from ..eval.ensemble_runs import to_markdown as run_markdown

        try:
            rule = VoteRule(threshold=0.70 if args.threshold is None else args.threshold, tie=Verdict(args.tie))
        except ValueError as exc:
            raise FfaaError(f"--threshold: {exc}") from None
        result = evaluate_run(args.reports, args.labels, rule)
        _show_and_save(result, run_markdown(result), args.out, "ensemble")
        return 0
    from ..eval.ensemble import evaluate_ensemble, load_table, to_markdown

    result = evaluate_ensemble(load_table(args.table), args.threshold, Verdict(args.tie))
    _show_and_save(result, to_markdown(result), args.out, "ensemble")
    return 0


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _show_and_save(result, text: str, out: Path | None, name: str) -> None:
    """Print a result's Markdown; with --out also save it as NAME.md and the result as NAME.json.

    The ensemble, explanations and judge commands all report this way, so their files match.
    """
    from ..eval.results import write_json

    print(text, end="")
    if out:
        md = out / f"{name}.md"
        _write_text(md, text)
        _print_written([write_json(result, out / f"{name}.json"), md])


def _load_pairing(args: argparse.Namespace):
    from ..eval.results import input_file
    from ..eval.texts import TextFields, load_texts, pair_texts

    preds = load_texts(args.predictions, TextFields(args.id_field, args.text_field))
    refs = None
    if args.references:
        refs = load_texts(args.references, TextFields(args.ref_id_field, args.ref_text_field), references=True)
    inputs = (input_file("predictions", args.predictions),)
    if args.references:
        inputs += (input_file("references", args.references),)
    return preds, refs, pair_texts(preds, refs), inputs


def run_explanations(args: argparse.Namespace) -> int:
    from ..eval.explanation import (
        ExplanationOptions,
        evaluate_explanations,
        to_markdown,
    )

    preds, refs, pairing, inputs = _load_pairing(args)
    options = ExplanationOptions(
        compare=args.compare, tokenizer=args.tokenizer, meteor=not args.no_meteor, css=not args.no_css,
        css_model=args.css_model, bertscore=not args.no_bertscore, bertscore_model=args.bertscore_model,
        bertscore_layers=args.bertscore_layer,
    )
    result = evaluate_explanations(preds, refs, pairing, options, inputs)
    _show_and_save(result, to_markdown(result), args.out, "explanations")
    return 0


def load_judge_factory(spec: str):
    """`module:factory` -> a Judge (objects with `judge`, or plain callables, are accepted).

    MODULE is looked up on sys.path and in the current folder, as `python -m` would: a judge
    written next to the data (`./my_judge.py`) is found without installing it."""
    from ..eval.judge import CallableJudge, Judge

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise FfaaError(f"--judge {spec!r}: expected MODULE:FACTORY, e.g. mypkg.judges:make_judge")
    try:
        factory = getattr(_import_from_here(module_name), attr)
    except ImportError as exc:
        raise FfaaError(f"--judge {spec!r}: cannot import {module_name!r} ({exc})") from None
    except AttributeError:
        raise FfaaError(f"--judge {spec!r}: {module_name!r} has no {attr!r}") from None
    judge = factory()
    if isinstance(judge, Judge):
        return judge
    if callable(judge):
        return CallableJudge(judge, name=spec)
    raise FfaaError(f"--judge {spec!r}: the factory returned {type(judge).__name__}, not a judge or a function")


def _import_from_here(module_name: str):
    """Import `module_name` with the current folder on sys.path for the duration."""
    here = str(Path.cwd())
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(module_name)
    finally:
        if added:
            sys.path.remove(here)


def run_judge(args: argparse.Namespace) -> int:
    from ..eval.judge import BackendJudge, label_lookup, to_markdown
    from ..eval.judge import run_judge as judge_all
    from ..eval.label_sources import load_labels
    from ..types import DecodingSettings
    from .common import say, spec_from_args

    if args.judge is None and args.model is None and not args.demo:
        raise FfaaError("choose a judge: --judge MODULE:FACTORY, or a model with --model (or --demo)")
    if args.judge is not None and (args.model is not None or args.demo):
        raise FfaaError("choose one judge: --judge MODULE:FACTORY or a model (--model/--demo), not both")
    if args.limit is not None and args.limit < 1:
        raise FfaaError("--limit must be at least 1")
    preds, refs, pairing, inputs = _load_pairing(args)
    if refs is not None and not any(pair.references for pair in pairing.pairs):
        raise FfaaError(_no_reference_message(preds, refs))
    label_of = label_lookup(load_labels(args.labels)) if args.labels else None
    if args.judge:
        judge = load_judge_factory(args.judge)
    else:
        judge = BackendJudge(spec_from_args(args).load_backend(say),
                             settings=DecodingSettings(max_new_tokens=args.judge_max_new_tokens))

    def progress(done: int, total: int) -> None:
        print(f"\rjudged {done}/{total}", end="", file=sys.stderr, flush=True)

    result = judge_all(judge, pairing, labels=label_of, limit=args.limit, inputs=inputs,
                       provenance=preds.provenance, progress=progress)
    print(file=sys.stderr)
    _show_and_save(result, to_markdown(result), args.out, "judge")
    return 0


def _no_reference_message(preds, refs) -> str:
    """The judge would grade every item without its reference: say so before it runs."""
    pred_id, ref_id = preds.records[0].id, refs.records[0].id
    return (f"no prediction matched a non-empty reference ({len(preds.records)} predictions, {len(refs.records)} "
            f"reference ids), e.g. prediction {pred_id!r} and reference {ref_id!r}; a reference id must be the end "
            "of a prediction's path, or --id-field/--ref-id-field must name the right keys")


def run_benchmark_command(args: argparse.Namespace) -> int:
    from ..batch.journal import LOG_NAME
    from ..eval.run import REPORTS_FOLDER, batch_runner, run_benchmark
    from .common import assistant_spec
    from .recorded import arguments_to_record, recorded_arguments, restore_arguments

    if args.resume and (recorded := recorded_arguments(args.out / REPORTS_FOLDER / LOG_NAME)):
        changed = restore_arguments(args, recorded)
        if changed:
            print(f"ffaa eval run: resuming {args.out} with its recorded settings: {', '.join(changed)}",
                  file=sys.stderr)
    options = _options(args)
    factory = assistant_spec(args)
    runner = batch_runner(factory, args.resume, not args.no_progress, arguments_to_record(args))
    run = run_benchmark(args.bench, args.out, runner, options, plots=not args.no_plots)
    print(_headline(run.evaluation.result))
    _print_written(run.written)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from ..eval.results import compare_results, format_comparison, read_result

    comparison = compare_results(read_result(args.a), read_result(args.b))
    print(format_comparison(comparison, args.a, args.b, args.changed_only))
    return 0
