"""Render one self-contained HTML report (figures embedded as base64 PNG, no network) from run directories.

Every string that comes from data (model outputs above all) goes through `html.escape`; the only script in the
page is the small table sorter written here.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
from pathlib import Path

from harness.config import format_length
from harness.errors import UserError
from harness.records import iter_run_dirs, load_run_meta, read_records
from reports.aggregate import (accuracy_by_length, base_score, by_config, effective_length,
                               effective_length_by_depth, effective_length_interval, extension_label, grid,
                               long_score, non_monotone, short_keys)

FEW = 3  # cells with fewer samples than this are marked in heatmaps
# RULER's convention: a length counts as effective while the score stays at or above Llama-2-7B's 4k score, 85.6 %.
RULER_THRESHOLD = 0.856
RELATIVE_THRESHOLD = 0.85  # ... and NoLiMa's: 85 % of the configuration's own base (shortest-length) score

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}h3{margin-bottom:.3em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3;cursor:pointer}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.pred{font-family:monospace;white-space:pre-wrap;max-width:420px;word-break:break-word}
.ok{color:#176b1b}.bad{color:#a11}.undecided{color:#8a5a00}.muted{color:#777;font-size:.85em}img{max-width:100%;height:auto}
details{margin:.5em 0}code{background:#f5f5f5;padding:0 3px}
.scroll{max-width:100%;overflow-x:auto}td.cell{text-align:center;min-width:4.2em}td.cell small{color:#333}
.flag{color:#8a5a00;font-size:.85em}td.cell.error{background:#ddd;color:#900}
"""

# Sorts a table by the clicked column (numbers numerically). Ours, inline: the report must work offline.
SORTER = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var table = th.closest('table'), body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.getAttribute('data-sort') !== 'asc';
    table.querySelectorAll('th').forEach(function(h){ h.removeAttribute('data-sort'); });
    th.setAttribute('data-sort', asc ? 'asc' : 'desc');
    rows.sort(function(a, b){
      var x = a.cells[col].getAttribute('data-v') || a.cells[col].textContent;
      var y = b.cells[col].getAttribute('data-v') || b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
"""

e = html.escape


SAVED: dict[str, bytes] = {}  # figure name → PNG, for `--save-figures`


def png(fig, name: str = "figure") -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    SAVED[name] = buf.getvalue()
    return f'<img alt="{e(name)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


_MODEL_NAMES: dict[str, str] = {}  # set by render(): the shortest unambiguous name of each model of the report


def model_names(models) -> dict[str, str]:
    """Each model by its folder name, or by its last two path parts where several models share that folder name
    (runs/bl5/alibi and runs/bl6-ema/alibi: bl5/alibi, bl6-ema/alibi)."""
    models = sorted(set(models))
    names = [Path(m).name for m in models]
    return {m: (str(Path(*Path(m).parts[-2:])) if names.count(n) > 1 else n) for m, n in zip(models, names)}


def _model(model: str) -> str:
    return _MODEL_NAMES.get(model) or Path(model).name


def _label(key: tuple) -> str:
    """A configuration in figures: method · runner (· model, by its folder name)."""
    model, ext, runner, task = key
    return f"{ext} · {runner} · {_model(model)}"


def _colour(score: float | None) -> str:
    """Background of a headline cell: the heatmaps' red-yellow-green for 0..1."""
    if score is None:
        return "#eee"
    import matplotlib

    r, g, b, _ = matplotlib.colormaps["RdYlGn"](0.15 + 0.7 * score)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def headline_table(groups: dict, threshold: float) -> str:
    """Rows = (model, method, runner), columns = lengths, cells = score with n (interval on hover); then the
    effective length (and a non-monotone flag) and the cost at the longest length."""
    lengths = sorted({r.context_length for rs in groups.values() for r in rs})
    rows = []
    for key, rs in groups.items():
        by_len = {row["context_length"]: row for row in accuracy_by_length(rs, errored=True)}
        cells = []
        for n in lengths:
            c = by_len.get(n)
            if c is None:
                cells.append('<td class="cell muted">–</td>')
                continue
            if not c["n"]:  # every sample raised: an error, not a score
                cells.append(f'<td class="cell error" title="every sample raised; see the failed samples">errors'
                             f'<br><small>{c["errors"]}</small></td>')
                continue
            errs = f' <span class="flag">+{c["errors"]} errors</span>' if c["errors"] else ""
            few = "*" if c["n"] < FEW else ""
            tip = (f"score {c['score']:.3f} ({c['metric'] or 'exact'}), 95% CI [{c['ci_low']:.2f}, "
                   f"{c['ci_high']:.2f}]; strict {c['correct']}/{c['n']}, lenient {c['lenient']}/{c['n']}")
            cells.append(f'<td class="cell" style="background:{_colour(c["score"])}" title="{e(tip)}" '
                         f'data-v="{c["score"]}">{c["score"]:.2f}<br><small>n={c["n"]}{few}{errs}</small></td>')
        rows_by_len = [row for row in by_len.values() if row["n"]]
        eff = effective_length(rows_by_len, threshold)
        again = non_monotone(rows_by_len, threshold)
        flag = f'<br><span class="flag">non-monotone: passes again at {format_length(again)}</span>' if again \
            else ""
        if rows_by_len:
            last = rows_by_len[-1]
            mem = last["peak_mem_bytes"]
            cost = (f'{_num(last["latency_s"], "{:.1f}")} s' + ("" if mem is None else f", {mem / 2**30:.2f} GiB")
                    + f" at {format_length(last['context_length'])}")
        else:
            cost = "every sample errored"
        full = f"{rs[0].extension}: {json.dumps(rs[0].extension_params, sort_keys=True)}"
        rows.append(f"<tr><td>{e(_model(key[0]))}</td><td title=\"{e(full)}\">{e(key[1])}</td>"
                    f"<td>{e(key[2])}</td>{''.join(cells)}"
                    f'<td class="num" data-v="{eff or 0}">{_len_or_none(eff, rows_by_len)}{flag}</td>'
                    f'<td class="num">{cost}</td></tr>')
    head = ["model", "method", "runner"] + [format_length(n) for n in lengths] + \
        [f"effective length (≥ {threshold:.3g})", "cost at the longest length"]
    return ('<table class="sortable headline"><thead><tr>'
            + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>" + "".join(rows)
            + "</tbody></table>")


def accuracy_figure(groups: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4))
    for key, rs in groups.items():
        rows = accuracy_by_length(rs)
        xs = [r["context_length"] for r in rows]
        ys = [r["score"] for r in rows]
        # clamped: at k = n Wilson's upper end can come out 1 - 1e-16 below a score of 1.0 (n = 48 did)
        err = [[max(0.0, y - r["ci_low"]) for y, r in zip(ys, rows)],
               [max(0.0, r["ci_high"] - y) for y, r in zip(ys, rows)]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=_label(key))
    windows = {r.model_max_position for rs in groups.values() for r in rs if r.model_max_position}
    for w in sorted(windows):
        ax.axvline(w, color="grey", linestyle=":", linewidth=1)
        ax.text(w, 1.02, f" window {format_length(w)}", color="grey", fontsize=8)
    ax.set_xscale("log", base=2)
    lengths = sorted({r.context_length for rs in groups.values() for r in rs})
    ax.set_xticks(lengths, [format_length(n) for n in lengths])
    ax.set_ylim(-0.05, 1.1)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("score (the task's metric), 95% Wilson CI")
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return png(fig, "accuracy_" + "_".join(sorted({k[3] for k in groups})))


def relative_length_figure(groups: dict) -> str:
    """Score against length / the model's trained window, so models with different windows line up (1 = the window);
    '' unless two or more windows are among the configurations (with one, it is the figure above rescaled)."""
    windows = {r.model_max_position for rs in groups.values() for r in rs if r.model_max_position}
    if len(windows) < 2:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for key, rs in groups.items():
        window = next((r.model_max_position for r in rs if r.model_max_position), None)
        if not window:
            continue
        rows = accuracy_by_length(rs)
        ax.plot([r["context_length"] / window for r in rows], [r["score"] for r in rows], marker="o",
                label=f"{_label(key)} (window {format_length(window)})")
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.05, 1.1)
    ax.set_xlabel("context length / the model's trained window")
    ax.set_ylabel("score")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return png(fig, "relative_" + "_".join(sorted({k[3] for k in groups})))


def comparison_figure(groups: dict) -> str:
    """Grouped bars: every configuration's score at each length (methods side by side), with Wilson CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lengths = sorted({r.context_length for rs in groups.values() for r in rs})
    keys = list(groups)
    width = 0.8 / max(1, len(keys))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 + 0.35 * len(keys) * len(lengths)), 3.8))
    for i, key in enumerate(keys):
        rows = {r["context_length"]: r for r in accuracy_by_length(groups[key])}
        xs = [j + (i - (len(keys) - 1) / 2) * width for j, n in enumerate(lengths) if n in rows]
        ys = [rows[n]["score"] for n in lengths if n in rows]
        lo = [rows[n]["score"] - rows[n]["ci_low"] for n in lengths if n in rows]
        hi = [rows[n]["ci_high"] - rows[n]["score"] for n in lengths if n in rows]
        ax.bar(xs, ys, width=width * 0.95, yerr=[lo, hi], capsize=2, label=_label(key))
        for x, n in zip(xs, [n for n in lengths if n in rows]):
            ax.text(x, 0.02, f"n={rows[n]['n']}", rotation=90, fontsize=6, ha="center", va="bottom")
    ax.set_xticks(np.arange(len(lengths)), [format_length(n) for n in lengths])
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("score (the task's metric)")
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, axis="y")
    return png(fig, "comparison_" + "_".join(sorted({k[3] for k in groups})))


def heatmap_figure(key: tuple, rs: list) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cells = grid(rs)
    depths = sorted({d for d, _ in cells}, key=lambda d: -1 if d is None else d)
    lengths = sorted({n for _, n in cells})
    acc = np.full((len(depths), len(lengths)), np.nan)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(lengths), 0.9 + 0.5 * len(depths)))
    for i, d in enumerate(depths):
        for j, n in enumerate(lengths):
            c = cells.get((d, n))
            if c is None:
                continue
            if not c["n"]:  # every sample of the cell raised
                ax.text(j, i, "error", ha="center", va="center", fontsize=9, color="black")
                continue
            acc[i, j] = c["score"]
            few = "*" if c["n"] < FEW else ""
            text = f"{c['correct']}/{c['n']}" if c["metric"] in (None, "exact") else f"{c['score']:.2f}"
            ax.text(j, i, text + few, ha="center", va="center", fontsize=9,
                    color="white" if c["score"] < 0.5 else "black")
    im = ax.imshow(acc, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(lengths)), [format_length(n) for n in lengths])
    ax.set_yticks(range(len(depths)), ["-" if d is None else f"{d:.0%}" for d in depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    ax.set_title(_label(key), fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="score")
    return png(fig, "heatmap_" + "_".join(str(k).replace("/", "_").replace(" ", "") for k in key))


def cost_labels(groups: dict) -> dict:
    """Each configuration's name in the cost panel, which draws every task in one figure: method · runner · model,
    and the task when the runs hold several (otherwise mqar and passkey runs of one method read the same)."""
    several = len({key[3] for key in groups}) > 1
    return {key: _label(key) + (f" · {key[3]}" if several else "") for key in groups}


def cost_figure(groups: dict) -> str:
    """Latency, peak memory and KV-cache bytes vs length, one line per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("latency_s", "mean latency (s)", 1.0), ("peak_mem_bytes", "peak memory (GiB)", 2**30),
              ("cache_bytes", "KV cache / state (MiB)", 2**20))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    lengths = sorted({r.context_length for rs in groups.values() for r in rs})
    names = cost_labels(groups)
    for ax, (field, label, unit) in zip(axes, panels):
        plotted = False
        for key, rs in groups.items():
            rows = [r for r in accuracy_by_length(rs) if r[field] is not None]
            if rows:
                plotted = True
                ax.plot([r["context_length"] for r in rows], [r[field] / unit for r in rows], marker="o",
                        label=names[key])
        if not plotted:
            ax.text(0.5, 0.5, "not recorded by these runs", ha="center", va="center", transform=ax.transAxes,
                    color="grey")
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [format_length(n) for n in lengths])
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:  # one legend for the three panels, outside them
        fig.legend(handles, labels, fontsize=9, loc="upper left", bbox_to_anchor=(1.0, 0.95))
    fig.tight_layout()
    return png(fig, "cost")


def effective_length_table(groups: dict, threshold: float, relative: float) -> str:
    """Effective length four ways (reports.aggregate): RULER's absolute threshold, NoLiMa's fraction of the base
    score, 100-LongBench's LongScore, and RULER's per needle depth; each with the range its Wilson bounds allow."""
    rows = []
    for key, rs in groups.items():
        by_len = accuracy_by_length(rs)
        if not by_len:  # every sample of this configuration raised
            continue
        first = by_len[0]
        absolute = effective_length_interval(by_len, threshold)
        base = base_score(by_len)
        rel = effective_length_interval(by_len, relative * base) if base else (None, None, None)
        ls = long_score(by_len)
        depths = effective_length_by_depth(rs, threshold)
        metric = first.get("metric") or "exact"
        cells = "".join(f"<td>{e(str(x))}</td>" for x in key)
        again = non_monotone(by_len, threshold)
        flag = f'<br><span class="flag">non-monotone: passes again at {format_length(again)}</span>' if again \
            else ""
        score = (f'{ls["value"]:+.2f}' + (f' [{ls["low"]:+.2f}, {ls["high"]:+.2f}]' if ls["low"] is not None
                                          and ls["high"] is not None else "")
                 + f'<br><small>base {ls["base"]:.2f} at ≤ {format_length(ls["base_lengths"][-1])}</small>'
                 if ls else "–")
        per_depth = ", ".join(f"{d:.0%}: {_len_or_none(v[0], by_len)}" for d, v in depths.items()) or "–"
        rows.append(f"<tr>{cells}<td>{e(metric)}</td>"
                    f'<td class="num" data-v="{absolute[0] or 0}">{_interval(absolute, by_len)}{flag}</td>'
                    f'<td class="num" data-v="{rel[0] or 0}">{_interval(rel, by_len)}<br><small>base '
                    f'{first["score"]:.2f} at {format_length(first["context_length"])}</small></td>'
                    f'<td class="num" data-v="{ls["value"] if ls else 0}">{score}</td>'
                    f'<td><small>{per_depth}</small></td>'
                    f'<td class="num">{format_length(by_len[-1]["context_length"])}</td></tr>')
    head = ("model", "extension", "runner", "task", "metric", f"effective length (score ≥ {threshold:.3g})",
            f"effective length (≥ {relative:.0%} of base)", "LongScore", "per depth (score ≥ "
            f"{threshold:.3g})", "longest tested")
    return ('<table class="sortable"><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _interval(v: tuple, by_len) -> str:
    """'8k<br>[4k, 16k]': an effective length and the range its scores' Wilson bounds allow."""
    point, low, high = v
    text = _len_or_none(point, by_len)
    if (low, high) != (point, point):
        text += f"<br><small>[{_len_or_none(low, by_len)}, {_len_or_none(high, by_len)}]</small>"
    return text


def _len_or_none(n, by_len) -> str:
    if not by_len:
        return "–"
    if n is None:
        return f"&lt; {format_length(by_len[0]['context_length'])}"
    return format_length(n) + (" (all tested)" if n == by_len[-1]["context_length"] else "")


def _num(v, fmt="{:.2f}") -> str:
    return "" if v is None else fmt.format(v)


def summary_table(groups: dict) -> str:
    rows = []
    for key, rs in groups.items():
        for row in accuracy_by_length(rs, errored=True):
            score = row["score"]
            mem = row["peak_mem_bytes"]
            if not row["n"]:  # every sample raised: no score, the error count stands alone
                rows.append("<tr>" + "".join(f"<td>{e(str(x))}</td>" for x in key)
                            + f'<td class="num" data-v="{row["context_length"]}">'
                              f'{format_length(row["context_length"])}</td><td class="num">0</td>'
                            + '<td class="num bad" data-v="-1">errors</td>' + "<td></td>" * 4
                            + f'<td class="num bad">{row["errors"]}</td>' + "<td></td>" * 5 + "</tr>")
                continue
            rows.append(
                "<tr>" + "".join(f"<td>{e(str(x))}</td>" for x in key)
                + f'<td class="num" data-v="{row["context_length"]}">{format_length(row["context_length"])}</td>'
                + f'<td class="num">{row["n"]}</td>'
                + f'<td class="num {"ok" if score and score >= 0.5 else "bad"}" data-v="{score}">{score:.2f} '
                  f'<span class="muted">{e(row["metric"] or "exact")}</span></td>'
                + f'<td class="num">[{row["ci_low"]:.2f}, {row["ci_high"]:.2f}]</td>'
                + f'<td class="num">{row["correct"]}/{row["n"]}</td>'
                + f'<td class="num">{row["lenient"]}/{row["n"]}</td>'
                + f'<td class="num">{row["empty"]}</td>'
                + f'<td class="num {"bad" if row["errors"] else ""}">{row["errors"]}</td>'
                + f'<td class="num">{_num(row["budget_hit"], "{}")}</td>'
                + f'<td class="num {"bad" if row["truncated"] else ""}">{_num(row["truncated"], "{}")}</td>'
                + f'<td class="num">{_num(row["tokens"], "{:.0f}")}</td>'
                + f'<td class="num">{_num(row["latency_s"], "{:.1f}")}</td>'
                + f'<td class="num" data-v="{mem or 0}">{"" if mem is None else f"{mem / 2**30:.2f}"}</td>'
                + "</tr>")
    head = ("model", "extension", "runner", "task", "length", "n", "score", "95% CI", "strict", "lenient", "empty",
            "errors", "hit budget", "thinking unclosed", "mean tokens", "mean latency s", "peak mem GiB")
    return ('<table class="sortable"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def failures_table(rs: list, limit: int = 200) -> str:
    failed = [r for r in rs if not r.correct]
    if not failed:
        return '<p class="muted">no failed samples</p>'
    rows = []
    for r in sorted(failed, key=lambda r: (r.context_length, r.depth or 0, r.sample_id))[:limit]:
        rows.append(
            f'<tr><td class="num" data-v="{r.context_length}">{format_length(r.context_length)}</td>'
            f'<td class="num">{r.tokens}</td><td class="num">{"" if r.depth is None else f"{r.depth:.0%}"}</td>'
            f'<td class="num">{r.sample_id}</td><td class="num">{"" if r.needle_token_offset is None else r.needle_token_offset}</td>'
            f"<td>{e(r.target)}</td><td class=\"pred\">{e(r.prediction)}</td>"
            f'<td>{"yes" if r.lenient else "no"}</td><td>{e(r.error or "")}</td></tr>')
    head = ("length", "tokens", "depth", "sample", "needle offset", "target", "prediction", "lenient", "error")
    more = f'<p class="muted">showing {limit} of {len(failed)}</p>' if len(failed) > limit else ""
    return ('<table class="sortable"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>" + more)


def manifest_section(run_dirs: list[Path]) -> str:
    parts = []
    for d in run_dirs:
        meta = load_run_meta(d)
        ident = meta.get("identity", {})
        invs = meta.get("invocations", [])
        cmds = "".join(f"<li><code>{e(' '.join(i.get('argv', [])))}</code> <span class=\"muted\">"
                       f"{e(str(i.get('started', '')))} · git {e(str(i.get('git_sha')))}</span></li>" for i in invs)
        last = invs[-1] if invs else {}
        parts.append(
            f"<details><summary><code>{e(str(d))}</code>: {e(str(ident.get('task')))} · "
            f"{e(str(ident.get('model')))} · {e(str(ident.get('extension')))} · {e(str(ident.get('runner')))}"
            f"</summary><ul>{cmds}</ul><pre>{e(json.dumps({'identity': ident, 'machine': last.get('machine'), 'packages': last.get('packages'), 'load': last.get('load')}, indent=2))}</pre></details>")
    return "".join(parts)


def perplexity_section(ppl_records: list) -> str:
    """Perplexity vs position (one-pass) and vs window length (sliding), mean over documents per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from collections import defaultdict
    from statistics import mean

    series: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in ppl_records:
        key = (r.model, extension_label(r.extension, r.extension_params), r.runner, r.mode)
        series[key][r.context_length].append(r.nll)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    rows = []
    for key, by_len in sorted(series.items()):
        xs = sorted(by_len)
        ys = [math.exp(mean(by_len[x])) for x in xs]
        ax.plot(xs, ys, marker="o", label=" · ".join(key))
        for x, y in zip(xs, ys):
            rows.append("<tr>" + "".join(f"<td>{e(str(k))}</td>" for k in key)
                        + f'<td class="num" data-v="{x}">{format_length(x)}</td><td class="num">{len(by_len[x])}</td>'
                        + f'<td class="num">{y:.2f}</td></tr>')
    windows = {r.model_max_position for r in ppl_records if r.model_max_position}
    for w in sorted(windows):
        ax.axvline(w, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("token position (bucket end) or sliding window length")
    ax.set_ylabel("perplexity")
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: many long labels
    ax.grid(alpha=0.3)
    head = ("model", "extension", "runner", "mode", "up to", "documents", "perplexity")
    table = ('<table class="sortable"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
             + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    return ("<h2>Perplexity vs length</h2><p class=\"muted\">one-pass: mean loss of the tokens in each position "
            "bucket, from one forward at the largest length; sliding: YaRN-style windows of the given length.</p>"
            + png(fig, "perplexity") + table)


# undecided at the cap is neither; a check outside the bracket that can no longer contradict it is plain
_DECISION_CLASS = {"pass": "ok", "fail": "bad", "cannot pass": "check", "cannot fail": "check"}


def search_section(run_dirs: list[Path]) -> str:
    """The path of every effective-length search among the runs (search.json): probed lengths with n, successes,
    interval and decision, the bracket, and the samples spent against a grid at the same resolution."""
    parts = []
    for d in run_dirs:
        f = Path(d) / "search.json"
        if not f.exists():
            continue
        try:
            s = json.loads(f.read_text(encoding="utf-8"))
            rows = "".join(
                f'<tr><td class="num" data-v="{p["length"]}">{format_length(p["length"])}</td><td>{e(p["purpose"])}</td>'
                f'<td class="num">{p["k"]}/{p["n"]}</td><td class="num">[{p["ci"][0]:.2f}, {p["ci"][1]:.2f}]</td>'
                f'<td class="{_DECISION_CLASS.get(p["decision"], "undecided")}">{e(str(p["decision"]))}</td></tr>'
                for p in s["probes"])
            lo, hi = s["bracket"]
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise UserError(f"{f} is not a longctx search.json ({err})") from None
        flags = "".join(f'<p class="flag">non-monotone: {e(x)}</p>' for x in s.get("non_monotone", []))
        flags += "".join(f'<p class="flag">undecided: {e(x)}</p>' for x in s.get("conditional", []))
        if s.get("estimate"):
            a, b = s["estimate"]
            flags += (f"<p>On the point estimates of the undecided lengths: passes at {format_length(a)}, fails at "
                      f"{format_length(b)} — where the estimates lead, not a claim.</p>")
        parts.append(f"<h3>{e(str(d))}</h3><p>{e(s['status'])}: passes at {lo and format_length(lo)}, fails at "
                     f"{hi and format_length(hi)} (threshold {s['config']['threshold']}); {s['samples']} samples, a "
                     f"grid at the same resolution and cap would take {s['grid_samples']}.</p>{flags}"
                     '<table class="sortable"><thead><tr><th>length</th><th>probe</th><th>found</th>'
                     "<th>exact bounds</th><th>decision</th></tr></thead><tbody>" + rows + "</tbody></table>")
    return ("<h2>Effective-length search</h2>" + "".join(parts)) if parts else ""


def read_bench(path: Path) -> dict:
    """A `longctx bench` result (bench.json), checked enough to draw."""
    f = Path(path) / "bench.json"
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
        doc["summary"]["rows"], doc["gemm"]["gflops"]  # noqa: B018 - the fields the panel reads
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{f} is not a longctx bench.json ({err})") from None
    return doc


def bench_section(benches: list[tuple[Path, dict]]) -> str:
    """The cost panel of `longctx bench` runs: each configuration's fraction of the machine's fp32 floor and seconds
    per sample against length, and the table of figures behind them."""
    if not benches:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = ["<h2>Cost against the floor (longctx bench)</h2>"]
    for i, (path, doc) in enumerate(benches):
        rows = doc["summary"]["rows"]
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
        lengths = sorted({r["length"] for r in rows})
        for config in dict.fromkeys(r["config"] for r in rows):
            rs = [r for r in rows if r["config"] == config]
            with_floor = [r for r in rs if "floor_fraction" in r]
            if with_floor:
                axes[0].plot([r["length"] for r in with_floor], [r["floor_fraction"] for r in with_floor],
                             marker="o", label=config)
            axes[1].plot([r["length"] for r in rs], [r["s_per_sample"] for r in rs], marker="o", label=config)
        axes[0].axhline(1.0, color="grey", lw=0.8, ls="--")
        for ax, label in zip(axes, ("fraction of the fp32 floor (prefill)", "seconds per sample")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(lengths, [format_length(n) for n in lengths])
            ax.set_xlabel("prompt length (tokens)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[1].set_yscale("log")
        axes[1].legend(fontsize=9)
        fig.tight_layout()
        table = "".join(
            f'<tr><td>{e(r["config"])}</td><td class="num" data-v="{r["length"]}">{format_length(r["length"])}</td>'
            f'<td class="num">{_num(r.get("floor_fraction"))}</td><td class="num">{_num(r.get("prefill_tok_s"), "{:.0f}")}'
            f'</td><td class="num">{_num(r["s_per_sample"])}</td><td class="num">{r["correct"]}/{r["samples"]}</td>'
            f'<td class="num">{_num(r["peak_bytes"] / 2**30 if r["peak_bytes"] else None)}</td></tr>' for r in rows)
        grids = "".join(
            f'<li>{format_length(int(n))}: {k} {g[k]["seconds"]:.1f} s against hf {g["hf"]["seconds"]:.1f} s'
            + (f', naive {g["naive"]["seconds"]:.1f} s ({g[k]["speedup_vs_naive"]:.2f}× faster)' if "naive" in g else "")
            + f'; reuse saving {g[k]["reuse_saving"]["measured"]:.2f} measured vs {g[k]["reuse_saving"]["flops"]:.2f} '
              f'by FLOPs</li>'
            for n, g in doc["summary"]["grids"].items() for k in ("hf+reuse", "kernel+reuse")
            if k in g and "reuse_saving" in g[k])
        mach = doc.get("machine", {})
        parts.append(
            f"<h3>{e(str(path))}</h3><p class=\"muted\">{e(str(doc.get('model')))} on {e(str(mach.get('cpu', '?')))} "
            f"({mach.get('cpu_count')} cores); fp32 GEMM {doc['gemm']['gflops']} GFLOP/s measured in the run. "
            "Fraction of the floor: the prefill's FLOPs at that rate over its measured time (1 = the floor).</p>"
            + png(fig, f"bench-{i}")
            + '<table class="sortable"><thead><tr><th>config</th><th>length</th><th>floor fraction</th>'
            "<th>prefill tok/s</th><th>s / sample</th><th>found</th><th>peak GiB</th></tr></thead><tbody>"
            + table + "</tbody></table>" + (f"<p>Depth grids:</p><ul>{grids}</ul>" if grids else ""))
    return "".join(parts)


TRAINING_FILE = "longctx_training.json"  # written by `longctx train-baselines` beside each checkpoint


def training_files(path: Path) -> list[Path]:
    """A checkpoint's training record, or those of the checkpoints right below a `train-baselines --out` folder."""
    path = Path(path)
    return [path / TRAINING_FILE] if (path / TRAINING_FILE).is_file() else sorted(path.glob(f"*/{TRAINING_FILE}"))


def read_training(f: Path) -> dict:
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
        doc["architecture"], doc["losses_every_10"]  # noqa: B018 - the fields the panel reads
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{f} is not a longctx training record ({err})") from None
    return doc


def _recipe(config: dict) -> str:
    """The training record's recipe, with the weights' moving average when the checkpoint is one and the
    checkpoint it continued (its last two path parts) when it did not start from random weights."""
    ema = config.get("ema_decay") or 0
    init = config.get("init_from") or ""
    return (str(config.get("recipe", "mixed")) + (f", EMA {ema:g}" if ema else "")
            + (f", continued from {'/'.join(Path(init).parts[-2:])}" if init else ""))


def training_section(trainings: list[tuple[Path, dict]]) -> str:
    """Training curves of `longctx train-baselines` checkpoints: loss, and held-out recall (8-pair mqar, passkey;
    teacher-forced, i.e. what greedy decoding would answer) against step, with how each run stopped."""
    if not trainings:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    rows = []
    for i, (path, doc) in enumerate(trainings):
        several = len({p.parent.parent for p, _ in trainings}) > 1  # more than one train-baselines folder
        label = f"{doc['architecture']} ({path.parent.parent.name})" if several else doc["architecture"]
        curve = doc.get("curve") or []
        colour = f"C{i % 10}"
        if curve:
            axes[0].plot([p["step"] for p in curve], [p["loss"] for p in curve], color=colour, label=label)
            axes[1].plot([p["step"] for p in curve], [p["mqar"] for p in curve], color=colour, label=f"{label} mqar")
            axes[1].plot([p["step"] for p in curve], [p["passkey"] for p in curve], color=colour, ls="--",
                         label=f"{label} passkey")
            if "phonebook" in curve[-1]:  # the recall recipe trains phone books since 2026-11-23
                axes[1].plot([p["step"] for p in curve], [p.get("phonebook") for p in curve], color=colour, ls=":",
                             label=f"{label} phone book")
        else:  # trained before curves were recorded: loss every 10 steps only
            losses = doc["losses_every_10"]
            axes[0].plot([10 * j + 1 for j in range(len(losses))], losses, color=colour, label=label)
        last = curve[-1] if curve else {}
        rows.append(f"<tr><td>{e(label)}</td><td class=\"num\">{doc.get('parameters', 0):,}</td>"
                    f"<td class=\"num\">{doc.get('steps_done')}</td><td>{e(str(doc.get('stopped_by', '?')))}</td>"
                    f"<td class=\"num\">{_num(doc.get('seconds'), '{:.0f}')}</td>"
                    f"<td class=\"num\">{_num(last.get('mqar'))}</td><td class=\"num\">{_num(last.get('passkey'))}</td>"
                    f"<td class=\"num\">{_num(last.get('phonebook'))}</td>"
                    f"<td>{e(_recipe(doc.get('config', {})))}</td></tr>")
    axes[0].set_ylabel("training loss (answer tokens; text: every token)")
    axes[1].set_ylabel("held-out recall (solid mqar, dashed passkey,\ndotted phone book)")
    axes[1].set_ylim(-0.02, 1.02)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return ("<h2>Training (longctx train-baselines)</h2><p class=\"muted\">Recall: the share of 16 held-out prompts at "
            "the training length answered exactly (teacher-forced argmax over the answer = greedy decoding).</p>"
            + png(fig, "training")
            + '<table class="sortable"><thead><tr><th>model</th><th>parameters</th><th>steps</th><th>stopped by</th>'
              "<th>seconds</th><th>mqar(8)</th><th>passkey</th><th>phone book</th><th>recipe</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def render(run_dirs: list[Path], title: str = "longctx report", threshold: float = RULER_THRESHOLD,
           relative: float = RELATIVE_THRESHOLD, benches: list[tuple[Path, dict]] | None = None,
           trainings: list[tuple[Path, dict]] | None = None) -> str:
    benches, trainings = benches or [], trainings or []
    every = [r for d in run_dirs for r in read_records(d)]
    records = [r for r in every if not r.scores_tokens]
    ppl_records = [r for r in every if r.scores_tokens]
    if not records and not ppl_records and not benches and not trainings:
        raise UserError(f"no records in {', '.join(map(str, run_dirs))}: run an experiment first")
    if not records:
        runs = ["<h2>Runs</h2>", manifest_section(run_dirs)] if run_dirs else []
        return _page(title, [f"<h1>{e(title)}</h1>", perplexity_section(ppl_records) if ppl_records else "",
                             bench_section(benches), training_section(trainings)] + runs)
    full = by_config(records)
    _MODEL_NAMES.clear()
    _MODEL_NAMES.update(model_names(r.model for r in records))
    short = short_keys(full)
    groups = {short[k]: rs for k, rs in full.items()}  # method labels name only what differs from defaults
    by_task: dict[str, dict] = {}
    for key, rs in groups.items():
        by_task.setdefault(key[3], {})[key] = rs
    body = [f"<h1>{e(title)}</h1>",
            f'<p class="muted">{len(records)} records from {len(run_dirs)} run(s); generated '
            f'{dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}. Cells: the task\'s score (hover for '
            f"its 95% Wilson interval, strict and lenient counts) with n; * marks n &lt; {FEW}. Method labels name "
            f"only the parameters that differ from the defaults (hover a method for all of them). Effective length: "
            f"the longest length up to which the score stays ≥ {threshold:.3g} at every length, read upwards "
            f"(RULER's convention; {RULER_THRESHOLD} is Llama-2-7B's 4k score).</p>"]
    for task, tgroups in by_task.items():
        body.append(f"<h2>{e(task)}</h2>{headline_table(tgroups, threshold)}")
    body += [f"<h2>Effective length</h2><p class=\"muted\">Four ways: RULER's (the score stays ≥ {threshold:.3g}); "
             f"NoLiMa's (≥ {relative:.0%} of the configuration's own base score, its shortest length); "
             "100-LongBench's LongScore (the mean of (score − base) / base past the base lengths, base = the mean "
             "score at ≤ 6k; 0 = no loss, −1 = nothing left); and RULER's per needle depth. Brackets: the range the "
             "lengths' 95 % Wilson bounds allow. A coarse grid bounds a length only to the lengths that were run.</p>",
             effective_length_table(groups, threshold, relative), "<h2>Cost</h2>", cost_figure(groups)]
    for task, tgroups in by_task.items():
        body.append(f"<h2>{e(task)}: score vs length</h2>{accuracy_figure(tgroups)}{relative_length_figure(tgroups)}")
        if len(tgroups) > 1:
            body.append(comparison_figure(tgroups))
        for key, rs in tgroups.items():
            body.append(f"<h3>{e(_label(key))}</h3>{heatmap_figure(key, rs)}")
            body.append(f"<details><summary>failed samples ({sum(not r.correct for r in rs)})</summary>"
                        f"{failures_table(rs)}</details>")
    from reports.diagnostics import ablation_section, answer_section, diagnostics_section, read_all

    body.append(ablation_section(groups))
    body.append(answer_section(groups, _label))
    body.append(diagnostics_section(groups, read_all(run_dirs), _label))
    if ppl_records:
        body.append(perplexity_section(ppl_records))
    body.append(search_section(run_dirs))
    body.append(bench_section(benches))
    body.append(training_section(trainings))
    body.append("<h2>Appendix</h2><details><summary>every configuration at every length (long form)</summary>"
                + summary_table(groups) + "</details>")
    body.append("<h2>Runs</h2>" + manifest_section(run_dirs))
    return _page(title, body)


def _page(title: str, body: list[str]) -> str:
    """The document; every table sits in its own horizontally scrolling box, so nothing is cut off."""
    text = "".join(body).replace("<table", '<div class="scroll"><table').replace("</table>", "</table></div>")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
            f"<style>{CSS}</style></head><body>{text}<script>{SORTER}</script></body></html>")


def iter_run_dirs_or_none(path) -> list[Path]:
    """The run directories at or below `path`, or none (where iter_run_dirs would refuse)."""
    try:
        return list(iter_run_dirs([str(path)]))
    except UserError:
        return []


def write_report(paths: list[str], output: str, title: str = "longctx report", threshold: float = RULER_THRESHOLD,
                 relative: float = RELATIVE_THRESHOLD, save_figures: str | None = None) -> Path:
    from harness.paths import check_apart, check_output_dir, check_output_file

    if not 0 < threshold <= 1 or not 0 < relative <= 1:
        raise UserError(f"thresholds are fractions in (0, 1], got --threshold {threshold}, --relative {relative}")
    check_output_file(output, "--output")
    if save_figures:
        check_output_dir(save_figures, "--save-figures")
    bench_paths = [Path(p) for p in paths if (Path(p) / "bench.json").is_file()]
    benches = [(p, read_bench(p)) for p in bench_paths]
    training_paths = [Path(p) for p in paths if Path(p) not in bench_paths and training_files(p)
                      and not list(iter_run_dirs_or_none(p))]
    trainings = [(f, read_training(f)) for p in training_paths for f in training_files(p)]
    rest = [p for p in paths if Path(p) not in bench_paths and Path(p) not in training_paths]
    run_dirs = list(iter_run_dirs(rest)) if rest or not (benches or trainings) else []
    inputs = run_dirs + [p / "bench.json" for p in bench_paths] + [f for f, _ in trainings]
    check_apart(output, inputs, "--output")
    if save_figures:
        check_apart(save_figures, inputs, "--save-figures")
    SAVED.clear()
    text = render(run_dirs, title=title, threshold=threshold, relative=relative, benches=benches,
                  trainings=trainings)
    if save_figures:
        fig_dir = Path(save_figures)
        fig_dir.mkdir(parents=True, exist_ok=True)
        for name, png in SAVED.items():
            (fig_dir / f"{name}.png").write_bytes(png)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out.resolve()
