"""The batch report as one self-contained HTML file.

Pictures are inlined as base64 JPEG, the video timelines are inline SVG, and a few lines of
inline JavaScript sort the table (click a column) and filter it (text, verdict, status, kind).
Every piece of text from the log (paths, ids, model output) goes through `html.escape`, and a
Content-Security-Policy allows no external resource, so a hostile file name or model answer
can neither run script nor make the report fetch anything.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from ..report import report_from_dict
from .journal import THUMBS
from .summary import BatchSummary, ItemView, overview

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
TIMELINE_W, TIMELINE_H, PAD = 520, 140, 28


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def render_html(s: BatchSummary) -> str:
    rows = "\n".join(_row(s.folder, v) for v in s.items)
    facts = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in overview(s))
    demo = ('<p class="demo">DEMO MODEL: random or rule-based answers; the verdicts below are noise.</p>'
            if s.demo else "")
    return _PAGE.format(csp=CSP, title=esc(f"ffaa batch report — {s.folder.name}"), demo=demo, facts=facts,
                        rows=rows, total=len(s.items), css=_CSS, js=_JS,
                        options=_options(s))


def _options(s: BatchSummary) -> str:
    kinds = sorted({v.batch["kind"] for v in s.items})
    return "".join(f'<option value="{esc(k)}">{esc(k)}</option>' for k in kinds)


def _row(folder: Path, v: ItemView) -> str:
    b, item = v.batch, v.item
    verdict = item.get("verdict") or "none"
    score = item.get("score")
    text = " ".join(str(x) for x in (*_ids(b), *b["paths"], item.get("reason") or "", b.get("label") or ""))
    attrs = {
        "data-id": b["item_id"], "data-kind": b["kind"], "data-verdict": verdict, "data-status": item["status"],
        "data-score": "" if score is None else f"{score:.6f}", "data-faces": item.get("faces") or 0,
        "data-label": b.get("label") or "", "data-text": text.lower(),
    }
    cells = [
        f'<td>{_img(folder, item.get("thumb"), "thumb")}</td>',
        f"<td>{_item_cell(folder, v)}</td>",
        f"<td>{esc(b['kind'])}<br><small>{esc(b['mode'])}</small></td>",
        f'<td><span class="v {esc(verdict)}">{esc(verdict)}</span></td>',
        f"<td>{'' if score is None else f'{score:.3f}'}</td>",
        f"<td>{esc(item.get('faces') or 0)}</td>",
        f'<td><span class="s {esc(item["status"])}">{esc(item["status"])}</span></td>',
        f"<td>{esc(b.get('label') or '')}</td>",
    ]
    attr = " ".join(f'{k}="{esc(val)}"' for k, val in attrs.items())
    return f"<tr {attr}>{''.join(cells)}</tr>"


def _ids(batch: dict) -> list[str]:
    """Every id of an item, first its own: copies listed under other ids keep theirs."""
    ids = [batch["item_id"], *batch.get("ids", ())]
    return list(dict.fromkeys(str(i) for i in ids))


def _item_cell(folder: Path, v: ItemView) -> str:
    b, item = v.batch, v.item
    head = f"<b>{' · '.join(esc(i) for i in _ids(b))}</b><br><small>{'<br>'.join(esc(p) for p in b['paths'])}</small>"
    if item.get("reason"):
        stage = f"[{esc(item['stage'])}] " if item.get("stage") else ""
        head += f'<p class="reason">{stage}{esc(item["reason"])}</p>'
    if v.video:
        head += timeline_svg(v.video)
    if not v.faces:
        return head
    faces = "".join(_face(folder, f) for f in v.faces)
    return f"{head}<details><summary>{len(v.faces)} face(s): explanations</summary>{faces}</details>"


def _face(folder: Path, record: dict[str, Any]) -> str:
    """One face: its crop, verdict, score, and the chosen answer's explanation."""
    report = report_from_dict(record)
    d, final, fb = report.decision, report.final, record["batch"]
    where = "whole image" if report.face is None else f"face {report.face_index}"
    if fb.get("frame_index") is not None:
        where += f" · frame {fb['frame_index']} at {fb['timestamp']:.2f} s"
    verdict = d.verdict.value if d.verdict else "undecided"
    facts = [f"decided by {d.method}", d.agreement]
    if d.forgery_score is not None:
        facts.insert(0, f"forgery score {d.forgery_score:.3f}")
    if final is not None and final.forgery_type is not None:
        facts.append(f"type: {final.forgery_type.value}")
    body = ""
    if final is not None:
        body = f"<p><i>Description.</i> {esc(final.description)}</p><p><i>Reasoning.</i> {esc(final.reasoning)}</p>"
    elif d.note:
        body = f"<p class='reason'>{esc(d.note)}</p>"
    return (f'<div class="face">{_img(folder, fb.get("crop"), "crop")}<div><b>{esc(where)}</b> '
            f'<span class="v {esc(verdict)}">{esc(verdict)}</span><br><small>{esc(" · ".join(facts))}</small>'
            f"{body}</div></div>")


def _img(folder: Path, name: str | None, css: str) -> str:
    """An inlined thumbnail, or an empty box when it is missing (e.g. --no-thumbnails)."""
    path = folder / THUMBS / name if name else None
    if path is None or not path.is_file():
        return f'<div class="{css} nopic"></div>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="{css}" alt="" src="data:image/jpeg;base64,{data}">'


def timeline_svg(video: dict[str, Any]) -> str:
    """Per-frame forgery scores over time, the threshold dashed, frames without faces as grey ticks."""
    agg, points = video["aggregate"], video["timeline"]
    end = max([video["decode"].get("duration_s") or 0.0] + [p["timestamp"] for p in points]) or 1.0
    plot = _Plot(end)
    scored = [p for p in points if p["score"] is not None]
    line = " ".join(f"{plot.x(p['timestamp']):.1f},{plot.y(p['score']):.1f}" for p in scored)
    dots = "".join(
        f'<circle cx="{plot.x(p["timestamp"]):.1f}" cy="{plot.y(p["score"]):.1f}" r="4" class="{esc(p["verdict"])}">'
        f"<title>frame {p['frame_index']} at {p['timestamp']:.2f} s: {p['score']:.3f} ({esc(p['verdict'])}, "
        f"{p['faces']} face(s))</title></circle>" for p in scored)
    base = plot.y(0)
    empty = "".join(
        f'<line x1="{plot.x(p["timestamp"]):.1f}" x2="{plot.x(p["timestamp"]):.1f}" y1="{base - 6:.1f}" '
        f'y2="{base:.1f}" class="noface"><title>frame {p["frame_index"]}: no face</title></line>'
        for p in points if p["score"] is None)
    thr = plot.y(agg["threshold"])
    return (
        f'<figure class="timeline"><svg width="{TIMELINE_W}" height="{TIMELINE_H}" '
        f'viewBox="0 0 {TIMELINE_W} {TIMELINE_H}" role="img" aria-label="forgery score per sampled frame">'
        f'<rect x="{PAD}" y="{PAD}" width="{TIMELINE_W - 2 * PAD}" height="{TIMELINE_H - 2 * PAD}" class="frame"/>'
        f'<line x1="{PAD}" x2="{TIMELINE_W - PAD}" y1="{thr:.1f}" y2="{thr:.1f}" class="thr"/>'
        f'<polyline points="{line}" class="score"/>{dots}{empty}'
        f'<text x="{PAD}" y="{TIMELINE_H - 8}">0 s</text>'
        f'<text x="{TIMELINE_W - PAD}" y="{TIMELINE_H - 8}" text-anchor="end">{end:.1f} s</text>'
        f'<text x="4" y="{PAD + 4}">1</text><text x="4" y="{TIMELINE_H - PAD + 4}">0</text>'
        f"</svg><figcaption>{esc(_caption(video))}</figcaption></figure>"
    )


def _caption(video: dict[str, Any]) -> str:
    agg = video["aggregate"]
    value = "n/a" if agg["score"] is None else f"{agg['score']:.3f}"
    text = f"{agg['rule']} = {value} (threshold {agg['threshold']:g}) → {agg['verdict'] or 'no verdict'}"
    if video.get("partial"):
        text += f" · PARTIAL: {video['decode'].get('error') or 'video not fully decoded'}"
    return text


class _Plot:
    """Maps (seconds, score in 0..1) to SVG coordinates inside the padded frame."""

    def __init__(self, end_s: float):
        self.end_s = end_s

    def x(self, t: float) -> float:
        return PAD + (TIMELINE_W - 2 * PAD) * t / self.end_s

    def y(self, score: float) -> float:
        return TIMELINE_H - PAD - (TIMELINE_H - 2 * PAD) * score


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.2em;color:#222}
h1{font-size:1.4em}table{border-collapse:collapse}
#facts th{text-align:left;padding-right:1em;font-weight:600}
#items{width:100%;margin-top:1em}#items th{cursor:pointer;background:#eee;position:sticky;top:0;text-align:left}
#items th,#items td{border-bottom:1px solid #ddd;padding:4px 6px;vertical-align:top}
#items th.asc::after{content:" ▲"}#items th.desc::after{content:" ▼"}
.thumb{width:96px;max-height:96px;object-fit:contain}.crop{width:80px;height:80px;margin-right:8px}
.nopic{background:#f3f3f3;display:inline-block;width:80px;height:60px}
.v{padding:1px 6px;border-radius:3px;font-weight:600}.v.fake{background:#fdd;color:#900}
.v.real{background:#dfd;color:#060}.v.none,.v.undecided{background:#eee}
.s.error{color:#900}.s.partial,.s.undecided{color:#a60}
.face{display:flex;margin:6px 0;max-width:900px}.face p{margin:4px 0}
.reason{color:#900}.demo{background:#ffd;border:1px solid #cc0;padding:6px;font-weight:600}
.controls{margin:1em 0}.controls *{margin-right:.6em}
svg .frame{fill:#fafafa;stroke:#ccc}svg .thr{stroke:#c00;stroke-dasharray:4 3}
svg .score{fill:none;stroke:#36c;stroke-width:1.5}svg circle.fake{fill:#c00}svg circle.real{fill:#090}
svg .noface{stroke:#999;stroke-width:2}svg text{font-size:11px;fill:#555}
figure{margin:6px 0}figcaption{font-size:12px;color:#444}
"""

_JS = """
(function(){
const body=document.querySelector('#items tbody'),rows=[...body.rows];
const q=document.getElementById('q'),fv=document.getElementById('fv'),fs=document.getElementById('fs'),
fk=document.getElementById('fk'),shown=document.getElementById('shown');
function apply(){const t=q.value.toLowerCase();let n=0;
for(const r of rows){const ok=(!t||r.dataset.text.includes(t))&&(!fv.value||r.dataset.verdict===fv.value)
&&(!fs.value||r.dataset.status===fs.value)&&(!fk.value||r.dataset.kind===fk.value);r.hidden=!ok;n+=ok;}
shown.textContent=n;}
[q,fv,fs,fk].forEach(e=>e.addEventListener('input',apply));
document.querySelectorAll('#items th[data-key]').forEach(th=>th.addEventListener('click',()=>{
const key=th.dataset.key,num=th.dataset.num==='1',dir=th.classList.contains('asc')?-1:1;
document.querySelectorAll('#items th').forEach(h=>h.classList.remove('asc','desc'));
th.classList.add(dir===1?'asc':'desc');
rows.sort((a,b)=>{let x=a.dataset[key],y=b.dataset[key];
if(num){x=x===''?-1:parseFloat(x);y=y===''?-1:parseFloat(y);return (x-y)*dir;}
return x.localeCompare(y)*dir;});rows.forEach(r=>body.appendChild(r));}));
apply();})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{css}</style></head>
<body><h1>{title}</h1>{demo}
<table id="facts">{facts}</table>
<div class="controls"><label>filter <input id="q" type="search" title="id, path or reason"></label>
<select id="fv"><option value="">any verdict</option><option value="fake">fake</option>
<option value="real">real</option><option value="none">none</option></select>
<select id="fs"><option value="">any status</option><option value="ok">ok</option>
<option value="partial">partial</option><option value="undecided">undecided</option>
<option value="error">error</option></select>
<select id="fk"><option value="">any kind</option>{options}</select>
<span><span id="shown">{total}</span> of {total} items shown</span></div>
<table id="items"><thead><tr><th></th><th data-key="id">item</th><th data-key="kind">kind</th>
<th data-key="verdict">verdict</th><th data-key="score" data-num="1">score</th>
<th data-key="faces" data-num="1">faces</th><th data-key="status">status</th>
<th data-key="label">label</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<script>{js}</script>
</body></html>
"""
