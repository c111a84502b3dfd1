"""The report's "why" sections (issue 34): the answer's log-probability, and per-head attention diagnostics.

Read from records (`answer_logprob`) and from the diagnostics lines written beside them (`diagnostics.jsonl`,
joined by configuration and sample key); nothing here runs a model or recomputes a method.

- the answer's teacher-forced log-probability against length, and against depth (mean over samples);
- per configuration × length, layer × head heatmaps of needle mass and retrieval score, passing samples beside
  failing ones;
- per configuration, the needle mass of its top retrieval heads (ranked at its shortest length) against length;
- a failed sample's own heatmap (the first few failures of each configuration).
"""
from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path

from harness.config import format_length
from harness.records import decode_heads, read_diagnostics, read_records
from reports.aggregate import config_key

e = html.escape
TOP = 5  # heads followed across lengths
DRILL = 6  # failed samples drawn one by one, per configuration


def read_all(run_dirs: list[Path]) -> dict[tuple, dict]:
    """(config key, sample key) → its diagnostics line, over the run directories."""
    out = {}
    for d in run_dirs:
        lines = read_diagnostics(d)
        if not lines:
            continue
        for r in read_records(d):
            if r.key in lines:
                out[config_key(r), r.key] = lines[r.key]
    return out


def _fields(line: dict, *names):
    return [decode_heads(line[n], line["layers"], line["heads"]) for n in names]


def answer_section(groups: dict, label) -> str:
    """Mean log p(answer) against length (one line per configuration) and against depth; '' without data."""
    have = {k: [r for r in rs if r.answer_logprob is not None and r.error is None] for k, rs in groups.items()}
    have = {k: rs for k, rs in have.items() if rs}
    if not have:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reports.html import png

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    for key, rs in have.items():
        by_len, by_depth = defaultdict(list), defaultdict(list)
        longest = max(r.context_length for r in rs)
        for r in rs:
            by_len[r.context_length].append(r.answer_logprob)
            if r.depth is not None and r.context_length == longest:
                by_depth[r.depth].append(r.answer_logprob)
        xs = sorted(by_len)
        a.plot(xs, [sum(by_len[x]) / len(by_len[x]) for x in xs], marker="o", label=label(key))
        ds = sorted(by_depth)
        if ds:
            b.plot(ds, [sum(by_depth[d]) / len(by_depth[d]) for d in ds], marker="o",
                   label=f"{label(key)} at {format_length(longest)}")
    a.set_xscale("log", base=2)
    a.set_xticks(sorted({r.context_length for rs in have.values() for r in rs}),
                 [format_length(n) for n in sorted({r.context_length for rs in have.values() for r in rs})])
    a.set_xlabel("context length (tokens)")
    a.set_ylabel("mean log p(answer) (nats)")
    b.set_xlabel("needle depth (each configuration's longest length)")
    b.set_ylabel("mean log p(answer) (nats)")
    a.legend(fontsize=7)
    if b.lines:
        b.legend(fontsize=7)
    a.grid(alpha=.3)
    b.grid(alpha=.3)
    rows = []
    for key, rs in have.items():
        by_len = defaultdict(list)
        for r in rs:
            by_len[r.context_length].append(r)
        for n, xs in sorted(by_len.items()):
            ok = [r.answer_logprob for r in xs if r.correct]
            bad = [r.answer_logprob for r in xs if not r.correct]
            per_tok = sum(r.answer_logprob / max(1, r.answer_tokens or 1) for r in xs) / len(xs)
            rows.append(f"<tr><td>{e(label(key))}</td><td class=\"num\" data-v=\"{n}\">{format_length(n)}</td>"
                        f"<td class=\"num\">{len(xs)}</td>"
                        f"<td class=\"num\">{sum(r.answer_logprob for r in xs) / len(xs):.2f}</td>"
                        f"<td class=\"num\">{per_tok:.2f}</td>"
                        f"<td class=\"num\">{'' if not ok else f'{sum(ok) / len(ok):.2f}'}</td>"
                        f"<td class=\"num\">{'' if not bad else f'{sum(bad) / len(bad):.2f}'}</td></tr>")
    head = ("configuration", "length", "n", "mean log p", "per token", "passing samples", "failing samples")
    return ("<h2>The answer's likelihood</h2><p class=\"muted\">log p of the target after the prompt, teacher-forced "
            "(natural log, summed over the answer's tokens): how far a miss was from the answer, how sure a pass "
            "was.</p>" + png(fig, "answer_logprob")
            + '<table class="sortable"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _heatmaps(title: str, panels: list[tuple[str, object]], name: str, vmax: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reports.html import png

    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels) + 0.6, 3.4), squeeze=False)
    for ax, (sub, values) in zip(axes[0], panels):
        if values is None:
            ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            ax.set_title(sub, fontsize=8)
            continue
        field = sub.split(":")[0]
        im = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0, vmax=vmax.get(field, 1.0),
                       interpolation="nearest")
        ax.set_title(sub, fontsize=8)
        L, H = values.shape
        ax.set_xticks(range(0, H, max(1, H // 8)))
        ax.set_yticks(range(0, L, max(1, L // 6)))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03)
    fig.suptitle(title, fontsize=9)
    return png(fig, name)


def diagnostics_section(groups: dict, diag: dict, label) -> str:
    """Per configuration × length: heatmaps pass vs fail; the top heads' needle mass against length; drill-downs.
    '' where no configuration has diagnostics."""
    import numpy as np

    body = []
    for key, rs in groups.items():
        lines = [(r, diag[config_key(r), r.key]) for r in rs if (config_key(r), r.key) in diag and r.error is None]
        if not lines:
            continue
        body.append(f"<h3>{e(label(key))}</h3>")
        by_len = defaultdict(list)
        for r, d in lines:
            by_len[r.context_length].append((r, d))
        mean = {}  # (length, passed) → field → (L, H)
        for n, xs in sorted(by_len.items()):
            for passed in (True, False):
                sel = [d for r, d in xs if bool(r.correct) == passed]
                if sel:
                    nm, ret = zip(*(_fields(d, "needle_mass", "retrieval") for d in sel))
                    mean[n, passed] = {"needle_mass": np.mean(nm, 0), "retrieval": np.mean(ret, 0), "n": len(sel)}
        vmax = {"needle mass": max((float(m["needle_mass"].max()) for m in mean.values()), default=1.0) or 1.0}
        for n in sorted(by_len):
            panels = []
            for field, title in (("needle_mass", "needle mass"), ("retrieval", "retrieval")):
                for passed, word in ((True, "pass"), (False, "fail")):
                    m = mean.get((n, passed))
                    panels.append((f"{title}: {word} (n={m['n'] if m else 0})", m[field] if m else None))
            slug = "_".join(str(k).replace("/", "_").replace(" ", "") for k in key)
            body.append(_heatmaps(f"{label(key)} at {format_length(n)}", panels, f"diag_{slug}_{n}", vmax))
        body.append(_top_heads_figure(key, by_len, label))
        failed = [(r, d) for r, d in lines if not r.correct][:DRILL]
        if failed:
            parts = []
            for r, d in failed:
                nm, ret = _fields(d, "needle_mass", "retrieval")
                where = "" if r.depth is None else f", depth {r.depth:.0%}"
                parts.append(_heatmaps(f"{format_length(r.context_length)}{where}, sample {r.sample_id}: wrote "
                                       f"{r.prediction.strip()[:30]!r} for {r.target!r}",
                                       [("needle mass", nm), ("retrieval", ret)],
                                       f"drill_{slug}_{r.context_length}_{r.depth}_{r.sample_id}", vmax))
            body.append(f"<details><summary>failed samples, one by one ({len(failed)} shown)</summary>"
                        + "".join(parts) + "</details>")
    if not body:
        return ""
    return ("<h2>Why: attention diagnostics</h2><p class=\"muted\">Per layer × head, at the row that writes the "
            "answer (<code>--diagnostics</code>): the attention mass on the needle's tokens, and Wu et al.'s retrieval score "
            "(the head's most attended key is a needle token equal to the token written). Passing samples beside "
            "failing ones; the top heads are ranked by retrieval score (then needle mass) at the configuration's "
            "shortest length.</p>" + "".join(body))


def _top_heads_figure(key, by_len: dict, label) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from reports.html import png

    lengths = sorted(by_len)
    if len(lengths) < 2:
        return ""
    per_len = {n: [_fields(d, "needle_mass", "retrieval") for _, d in by_len[n]] for n in lengths}
    nm0 = np.mean([x[0] for x in per_len[lengths[0]]], 0)
    ret0 = np.mean([x[1] for x in per_len[lengths[0]]], 0)
    L, H = nm0.shape
    order = sorted(((ret0[la, h], nm0[la, h], la, h) for la in range(L) for h in range(H)), reverse=True)[:TOP]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for _, _, la, h in order:
        ys = [float(np.mean([x[0][la, h] for x in per_len[n]])) for n in lengths]
        ax.plot(lengths, ys, marker="o", label=f"{la}.{h}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [format_length(n) for n in lengths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle mass")
    ax.set_title(f"{label(key)}: its top {len(order)} retrieval heads at {format_length(lengths[0])}", fontsize=9)
    ax.legend(fontsize=7, title="layer.head", title_fontsize=7)
    ax.grid(alpha=.3)
    slug = "_".join(str(k).replace("/", "_").replace(" ", "") for k in key)
    return png(fig, f"tophead_{slug}")


def ablation_section(groups: dict) -> str:
    """The causal check: per model × method × runner × task × length, accuracy with no head removed beside each
    set of heads removed (--ablate-heads), with Wilson intervals and the answer's mean log-probability; '' where no
    run ablated heads."""
    from reports.aggregate import accuracy_by_length, extension_label

    table: dict[tuple, dict] = defaultdict(dict)
    for rs in groups.values():
        for r in rs:
            base = (r.model, extension_label(r.extension, r.extension_params), r.runner, r.task, r.context_length)
            table[base].setdefault(r.ablation or "", []).append(r)
    table = {k: v for k, v in table.items() if set(v) - {""}}
    if not table:
        return ""
    rows = []
    for (model, ext, runner, task, n), by in sorted(table.items()):
        # the baseline on the ablated runs' own prompts only: other unablated runs in the report (another seed, a
        # diagnostics run) are other prompts, and the check compares like with like
        asked = {r.prompt_sha for a, rs in by.items() if a for r in rs}
        if "" in by and asked and any(r.prompt_sha in asked for r in by[""]):
            by[""] = [r for r in by[""] if r.prompt_sha in asked]
        for ablation in sorted(by, key=lambda a: (a != "", a.split(":")[0] != "top", a)):
            rs = [r for r in by[ablation] if r.error is None]
            if not rs:
                continue
            (c,) = accuracy_by_length(rs)
            lps = [r.answer_logprob for r in rs if r.answer_logprob is not None]
            heads = next((r.ablated_heads for r in rs if r.ablated_heads), "")
            rows.append(f"<tr><td>{e(Path(model).name)} · {e(ext)} · {e(runner)} · {e(task)}</td>"
                        f"<td class=\"num\" data-v=\"{n}\">{format_length(n)}</td>"
                        f"<td title=\"{e(heads)}\">{e(ablation or 'none removed')}</td>"
                        f"<td class=\"num\">{c['correct']}/{c['n']}</td>"
                        f"<td class=\"num\">{c['score']:.2f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]</td>"
                        f"<td class=\"num\">{'' if not lps else f'{sum(lps) / len(lps):.2f}'}</td></tr>")
    head = ("configuration", "length", "heads removed", "correct", "score [95% Wilson]", "mean log p(answer)")
    return ("<h2>Causal check: heads removed</h2><p class=\"muted\">The same prompts with chosen attention heads' "
            "outputs zeroed: top:K ranks heads by retrieval score in a diagnostics run, random:K draws K (seeded). A "
            "diagnostic is evidence when removing its top heads costs more than removing as many random ones. Hover "
            "a row for the heads.</p>"
            '<table class="sortable"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
