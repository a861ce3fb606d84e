"""The reports of both tasks. Classification: the markdown report, the accuracy-against-throughput image and
the data of `dvc plots`, from the table `quantpipe.analysis` computes (reports/compare.md); generation: the
seq2seq report, from the rows of `quantpipe.seq2seq.compare.summary` (reports/seq2seq.md). Both open with the
CPU line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from quantpipe.analysis import pareto_front
from quantpipe.config.constants import SEQ2SEQ_BASELINE, SEQ2SEQ_FP32
from quantpipe.config.sections import LengthPolicy
from quantpipe.environment import has_bf16
from quantpipe.io import write_json


def _fmt_ci(row, name: str) -> str:
    if pd.isna(row.get(name)):
        return "-"
    if f"{name}_ci_low" in row and pd.notna(row.get(f"{name}_ci_low")):
        return f"{row[name]:.4f} [{row[f'{name}_ci_low']:.3f}, {row[f'{name}_ci_high']:.3f}]"
    return f"{row[name]:.4f}"


def display_table(group: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in group.iterrows():
        t = r["throughput"]
        latency = r.get("latency") if isinstance(r.get("latency"), dict) else {}
        rows.append(
            {
                "variant": f"**{r['variant']}**" if r["best_within_budget"] else r["variant"],
                "accuracy [95% CI]": _fmt_ci(r, "accuracy"),
                "Δ acc": f"{r['accuracy_delta'] * 100:+.2f} pt",
                "agree [95% CI]": _fmt_ci(r, "agreement"),
                "agree, same length": _fmt_ci(r, "agreement_at_length"),
                "F1 [95% CI]": _fmt_ci(r, "f1"),
                "samples/s [IQR]": f"{t['median']:.1f} [{t['q1']:.1f}, {t['q3']:.1f}]",
                "CV": f"{t.get('cv', 0.0) * 100:.1f}%",
                "streams": str(r["streams"]),
                "speed ratio [range]": f"{r['speed_ratio']:.2f}x [{r['speed_ratio_low']:.2f}, {r['speed_ratio_high']:.2f}]",
                "p50/p95/p99 ms (bs 1)": "/".join(f"{latency[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms"))
                if latency
                else "-",
                "kind": r["kind"],
                "model, length": _model_and_length(r),
                "size MB (ratio)": f"{r['model_size_mb']:.1f} ({r['size_ratio']:.2f}x)",
                "peak RSS MB serving / batched (ratios)": f"{r['peak_rss_serving_mb']:.0f} / {r['peak_rss_mb']:.0f} "
                f"({r['peak_rss_serving_ratio']:.2f}x / {r['peak_rss_ratio']:.2f}x)",
                "load s": f"{r['load_seconds']:.2f}",
            }
        )
    return pd.DataFrame(rows)


def _model_and_length(row) -> str:
    """The model a row's variant is built from and the tokens it reads (`base, 256 head`), where recorded."""
    if pd.isna(row.get("max_length")):
        return "-"
    return f"{row['model']}, {LengthPolicy(int(row['max_length']), row['truncation'])}"


def cpu_line(cpu: dict) -> str:
    """The line every report opens with: the CPU its figures were measured on (`quantpipe.environment.cpu_info`)."""
    flags = ", ".join(f for f, on in cpu["flags"].items() if on) or "none of the tracked flags"
    numbers = f" (family/model {cpu['family_model']})" if cpu.get("family_model") else ""
    return f"CPU: **{cpu['model']}**{numbers}, {cpu['machine']}, {cpu['cores']} cores; flags: {flags}."


def markdown_report(
    table: pd.DataFrame,
    baseline: str,
    accuracy_budget: float,
    side_by_side: dict,
    environment: dict | None = None,
    image: str | None = None,
    answer: dict | None = None,
    skipped: dict[str, str] | None = None,
) -> str:
    """The report: the CPU, the answer (`quantpipe.analysis.the_answer`), the models skipped on this CPU, then
    how it was measured and one table per dataset."""
    lines = ["# quantpipe comparison", ""]
    if environment:
        cpu = environment["cpu"]
        lines += [cpu_line(cpu), ""]
        if has_bf16(cpu):
            lines += [
                (
                    "This CPU computes bf16 natively; ONNX Runtime's CPU provider has no bf16 arithmetic "
                    "(onnxruntime#28768, #19937): its models run in fp32 or int8 here, while OpenVINO (no precision "
                    "hint) and PyTorch (`autocast: bf16`) use bf16."
                ),
                "",
            ]
    if answer:
        lines += [answer_markdown(answer, baseline, accuracy_budget)]
    if skipped:
        lines += [skipped_line(skipped), ""]
    lines += [
        "## How it was measured",
        "",
        f"Baseline: `{baseline}`. Δ acc and speed ratio are against the baseline on the same dataset;",
        f"**bold** marks the fastest model within {accuracy_budget * 100:g} accuracy point(s) of it.",
        "Throughput and speed ratio come from the side_by_side stage: every model loaded in one process and timed",
        "in rounds over the same texts (tokenization included, length-sorted batches padded per batch), each round",
        "timing each model once, in orders from a Williams design (each model in each position and after each",
        "other model equally often). samples/s: median over the rounds [interquartile range], CV: coefficient of",
        "variation; speed ratio: median of the round-by-round ratios to the baseline [min, max over the rounds];",
        "streams: the batches a model had in flight at once (its configured concurrency).",
        "Accuracy and F1 on the whole split, 95% paired bootstrap intervals; agree: the share of the texts on which",
        "the model predicts the baseline's label, 95% paired bootstrap interval. Latency, size, peak RSS, load time:",
        "each model's own evaluate stage, a fresh process that imports only what serving its kind needs (no torch",
        "for ONNX Runtime or OpenVINO). Latency: batch size 1, one caller, tokenization included. Peak RSS serving:",
        "the high-water mark after loading, one batch and the texts one at a time; batched: after the whole splits",
        "in batches too. Ratios: against the baseline.",
        "",
    ]
    if environment:
        lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in environment["versions"].items() if v), ""]
    for dataset, group in table.groupby("dataset", sort=True):
        timed = side_by_side["datasets"][dataset]["examples"]
        lines += [
            f"## {dataset}",
            "",
            (f"{group['n'].max()} examples scored; the first {timed} timed in {side_by_side['rounds']} rounds."),
            "",
            display_table(group).to_markdown(index=False, disable_numparse=True),
            "",
        ]
    if image:
        lines += [f"![accuracy against throughput]({image})", ""]
    return "\n".join(lines)


def _ratio(answer: dict, name: str) -> str:
    return f"{answer[name]:.2f}x [{answer[name + '_low']:.2f}, {answer[name + '_high']:.2f}]"


def _against(answer: dict, name: str, other: str, ranked: str) -> str:
    if other not in answer:
        return "-"
    if name not in answer:  # the model to ship is itself that model
        return "itself"
    return f"{_ratio(answer, name)} `{answer[other]}`" + ("" if answer[ranked] else ": not ranked")


def answer_markdown(answer: dict, baseline: str, accuracy_budget: float) -> str:
    """The report's first section: per dataset (one column each) the model to ship and why, then plain notes
    where the ranges do not rank it, an engine default recipe is faster, or a single caller would pick another."""
    datasets = sorted(answer)
    facts = {
        "ship: most samples/s within budget": lambda a: (
            f"**{a['ship']}**" + (f" ({a['streams']} streams)" if a["streams"] > 1 else "")
        ),
        "its model, tokens read": lambda a: _model_and_length(a),
        f"speed vs `{baseline}`": lambda a: _ratio(a, "speed_ratio"),
        "vs the runner-up within budget": lambda a: _against(a, "vs_runner_up", "runner_up", "ranked"),
        "vs the fastest engine default": lambda a: _against(
            a, "vs_reference", "fastest_reference", "ranked_vs_reference"
        ),
        "Δ acc": lambda a: f"{a['accuracy_delta'] * 100:+.2f} pt",
        f"agreement with `{baseline}` [95% CI]": lambda a: _fmt_ci(a, "agreement"),
        f"agreement with `{baseline}` reading as it does": lambda a: _fmt_ci(a, "agreement_at_length"),
        "lowest latency within budget (bs 1, p50)": lambda a: (
            f"`{a['latency_best']}` {a['latency_best_p50_ms']:.1f} ms" if "latency_best" in a else "-"
        ),
    }
    table = pd.DataFrame([{"": fact, **{d: show(answer[d]) for d in datasets}} for fact, show in facts.items()])
    notes = []
    for dataset in datasets:
        a = answer[dataset]
        unranked_runner_up = "runner_up" in a and not a["ranked"]
        if unranked_runner_up:
            also = " (also the fastest engine default)" if a["runner_up"] == a.get("fastest_reference") else ""
            notes.append(
                f"{dataset}: `{a['ship']}` is not ranked against the runner-up `{a['runner_up']}`{also}: the ratio of "
                f"their samples/s, round by round, {_ratio(a, 'vs_runner_up')}, spans 1.0x; either may be the faster."
            )
        reference = a.get("fastest_reference")
        if reference == a["ship"]:
            notes.append(f"{dataset}: `{a['ship']}` is itself an engine default recipe (`compare.references`).")
        elif "vs_reference" in a and not (unranked_runner_up and reference == a["runner_up"]):
            if not a["ranked_vs_reference"]:
                notes.append(
                    f"{dataset}: `{a['ship']}` and the fastest engine default `{reference}` are not ranked: "
                    f"{_ratio(a, 'vs_reference')} spans 1.0x."
                )
            elif a["vs_reference"] < 1:
                notes.append(
                    f"{dataset}: the engine default `{reference}` is faster than `{a['ship']}`: "
                    f"{_ratio(a, 'vs_reference')}."
                )
        if a.get("latency_best", a["ship"]) != a["ship"] and "ship_p50_ms" in a:
            notes.append(
                f"{dataset}: for one caller at a time (batch size 1), `{a['latency_best']}` has the lowest latency "
                f"within budget: p50 {a['latency_best_p50_ms']:.1f} ms against `{a['ship']}`'s {a['ship_p50_ms']:.1f} ms."
            )
    lines = [
        "## The answer",
        "",
        "The model to ship per dataset: the most samples/s (batched, side by side, at its streams) within",
        f"{accuracy_budget * 100:g} accuracy point(s) of `{baseline}`. Speeds: median [min, max] of the round-by-round",
        "ratios of samples/s; a range that spans 1.0x does not rank the two models.",
        "",
        table.to_markdown(index=False, disable_numparse=True),
        "",
    ]
    return "\n".join(lines + [f"- {note}" for note in notes] + ([""] if notes else []))


def sensitivity_markdown(sensitivity: dict) -> str:
    """The sensitivity rows as a section: each part quantized alone, against the fp32 graph."""
    rows = pd.DataFrame(sensitivity["rows"])
    others = rows[~rows["kind"].isin(["none", "all"])]
    table = pd.DataFrame(
        {
            "quantized alone": [
                r["part"] if r["kind"] in ("none", "all") else f"{r['kind']} {r['part']}" for _, r in rows.iterrows()
            ],
            "candidate nodes": rows["nodes"],
            "accuracy": rows["accuracy"].map("{:.4f}".format),
            "Δ acc": (rows["accuracy_delta"] * 100).map("{:+.2f} pt".format),
            "model-only speed vs fp32": rows["speed_ratio"].map("{:.2f}x".format),
        }
    )
    whole = rows.loc[rows["kind"] == "all", "accuracy_delta"]
    lines = [
        f"## Sensitivity of `{sensitivity['variant']}` on {sensitivity['dataset']} ({sensitivity['examples']} examples)",
        "",
        "Each row quantizes only that operator type, or only that part of the network, with the variant's",
        "settings and ranges; `all` is the whole variant. Candidate nodes: nodes of the quantized operator types in",
        "that part (before `nodes_to_exclude` and ONNX Runtime's own skips). Speed: model time only, median of the",
        "repeated passes, alternating between the models in one process, against the fp32 graph.",
        "",
        table.to_markdown(index=False, disable_numparse=True),
        "",
    ]
    if len(whole):
        for kind in ("operator", "layer"):
            part_sum = others.loc[others["kind"] == kind, "accuracy_delta"].sum()
            lines.append(
                f"Sum of the {kind} rows' Δ acc: {part_sum * 100:+.2f} pt; the whole variant: "
                f"{whole.iloc[0] * 100:+.2f} pt."
            )
        lines.append("")
    return "\n".join(lines)


def write_plots(table: pd.DataFrame, plots_dir: Path) -> None:
    """Data for `dvc plots`: accuracy against throughput, and latency percentiles, one file per dataset."""
    for dataset, group in table.groupby("dataset"):
        write_json(
            Path(plots_dir) / f"pareto_{dataset}.json",
            [
                {
                    "variant": r["variant"],
                    "samples_per_second": round(r["samples_per_second"], 3),
                    "accuracy": round(r["accuracy"], 6),
                }
                for _, r in group.iterrows()
            ],
        )
        latency = [
            {"model": f"{r['variant']} {k.removesuffix('_ms')}", "latency_ms": round(r["latency"][k], 3)}
            for _, r in group.iterrows()
            if isinstance(r.get("latency"), dict) and r["latency"]
            for k in ("p50_ms", "p95_ms", "p99_ms")
        ]
        write_json(Path(plots_dir) / f"latency_{dataset}.json", latency)


# where a label may go, tried in this order: offsets in points from its point (right, left, then farther out)
LABEL_OFFSETS = [
    (dx * side, dy)
    for dx, dy in ((6, 0), (6, 10), (6, -10), (10, 22), (10, -22), (14, 36), (14, -36), (18, 50), (18, -50))
    for side in (1, -1)
]
GROUP_DISTANCE = 0.02  # points closer than this (in both axes, as a fraction of the axes) share one label


def _styles(table: pd.DataFrame, baseline: str, references: list[str]) -> list[tuple[str, pd.Series, dict]]:
    """(legend label, rows, marker style) of the baseline, the engines' default recipes, the best model within
    budget and the others; each row in exactly one."""
    best, base, ref = table["best_within_budget"], table["variant"] == baseline, table["variant"].isin(references)
    return [
        (f"baseline ({baseline})", base & ~best, {"fmt": "D", "color": "black", "markersize": 6}),
        ("engine default recipe (compare.references)", ref & ~best & ~base, {"fmt": "s", "color": "tab:orange"}),
        ("other model", ~ref & ~best & ~base, {"fmt": "o", "color": "tab:blue", "markersize": 5}),
        ("best within budget", best, {"fmt": "*", "color": "tab:red", "markersize": 14}),
    ]


def _label_groups(ax, group: pd.DataFrame) -> list[tuple[float, float, str]]:
    """(x, y, "a, b") per cluster of points that lie within GROUP_DISTANCE of each other in axes fractions."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    clusters: list[list[tuple[float, float, str]]] = []
    for _, r in group.sort_values(["samples_per_second", "variant"]).iterrows():
        x, y = r["samples_per_second"], r["accuracy"]
        for cluster in clusters:
            cx, cy, _ = cluster[0]
            if abs(x - cx) / (x1 - x0) < GROUP_DISTANCE and abs(y - cy) / (y1 - y0) < GROUP_DISTANCE:
                cluster.append((x, y, r["variant"]))
                break
        else:
            clusters.append([(x, y, r["variant"])])
    return [(c[0][0], c[0][1], ", ".join(name for _, _, name in c)) for c in clusters]


def _annotate(ax, text: str, xy: tuple[float, float], offset: tuple[int, int], leader: bool = False):
    """The label `text` at `offset` points from `xy` (with a thin leader line to it if `leader`), and the box of
    its text in pixels."""
    note = ax.annotate(
        text,
        xy,
        xytext=offset,
        textcoords="offset points",
        fontsize=7.5,
        ha="left" if offset[0] > 0 else "right",
        va="center",
        arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6, "shrinkB": 4} if leader else None,
    )
    return note, note.get_window_extent(ax.figure.canvas.get_renderer()).padded(2)


def _place_labels(ax, labels: list[tuple[float, float, str]]) -> None:
    """Annotate each (x, y, text) at the first of LABEL_OFFSETS where its text stays inside the axes and overlaps
    neither a point nor a label placed before it (the first offset if none does), with a leader line when it is
    away from its point; deterministic, no solver."""
    from matplotlib.transforms import Bbox

    inside = ax.get_window_extent(ax.figure.canvas.get_renderer()).padded(-4)  # off the frame
    taken = [Bbox.from_bounds(*(ax.transData.transform((x, y)) - 6), 12, 12) for x, y, _ in labels]
    for x, y, text in labels:
        chosen = LABEL_OFFSETS[0]
        for offset in LABEL_OFFSETS:
            note, box = _annotate(ax, text, (x, y), offset)
            note.remove()
            fits = inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)
            if fits and not any(box.overlaps(other) for other in taken):
                chosen = offset
                break
        taken.append(_annotate(ax, text, (x, y), chosen, leader=abs(chosen[1]) > 10)[1])


def render_image(table: pd.DataFrame, path: Path, baseline: str, accuracy_budget: float, references: list[str]) -> None:
    """Accuracy against samples/s, one subplot per dataset: the median samples/s over the side-by-side rounds
    with their interquartile range as horizontal bars (the top axis: the same as a multiple of the baseline's),
    accuracy with its 95% CI as vertical bars, the accuracy budget as a band below the baseline's accuracy, the
    engines' default recipes and the best model within budget marked, the Pareto front dashed. Models at one
    spot share a label; labels are moved until they overlap nothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted(table["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(7 * len(datasets), 5.5), squeeze=False)
    handles = {}
    for ax, dataset in zip(axes[0], datasets):
        group = table[table["dataset"] == dataset]
        base = group[group["variant"] == baseline].iloc[0]
        band = ax.axhspan(base["accuracy"] - accuracy_budget, base["accuracy"], color="tab:green", alpha=0.12, lw=0)
        handles[f"accuracy budget: {accuracy_budget * 100:g} pt below {baseline}"] = band
        for label, rows, style in _styles(group, baseline, references):
            if not rows.any():
                continue
            picked = group[rows]
            x, y = picked["samples_per_second"], picked["accuracy"]
            q1, q3 = picked["throughput"].map(lambda t: t["q1"]), picked["throughput"].map(lambda t: t["q3"])
            has_ci = "accuracy_ci_low" in picked and picked["accuracy_ci_low"].notna().all()
            yerr = [y - picked["accuracy_ci_low"], picked["accuracy_ci_high"] - y] if has_ci else None
            handles[label] = ax.errorbar(
                x, y, xerr=[x - q1, q3 - x], yerr=yerr, linestyle="none", elinewidth=0.8, capsize=2, zorder=3, **style
            )
        front = pareto_front(group)
        (handles["Pareto front"],) = ax.plot(
            front["samples_per_second"], front["accuracy"], linestyle="--", color="0.5", lw=0.8, zorder=2
        )
        ax.margins(x=0.12, y=0.08)
        ax.set(title=dataset, xlabel="samples/s (median over the rounds; bars: IQR)", ylabel="accuracy (bars: 95% CI)")
        ax.secondary_xaxis(
            "top",
            functions=(lambda v, b=base["samples_per_second"]: v / b, lambda v, b=base["samples_per_second"]: v * b),
        ).set_xlabel(f"x {baseline}")
        ax.grid(alpha=0.3)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    for ax, dataset in zip(axes[0], datasets):
        _place_labels(ax, _label_groups(ax, table[table["dataset"] == dataset]))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def references_markdown(references: dict, rounds: int) -> str:
    """The best model within budget against the fastest engine default recipe, per dataset."""
    lines = [
        "## Against the engines' default recipes",
        "",
        "samples/s ratio of the best model within budget to the fastest of `compare.references`, round by round",
        f"({rounds} rounds): median [min, max].",
        "",
    ]
    for dataset, c in references.items():
        r = c["ratio"]
        lines.append(
            f"- {dataset}: `{c['best']}` against `{c['reference']}`: {r['median']:.2f}x [{r['min']:.2f}, {r['max']:.2f}]"
        )
    return "\n".join([*lines, ""])


def skipped_line(skipped: dict[str, str]) -> str:
    """The models skipped on this CPU (name -> reason), in one line (either task's report)."""
    return "Skipped on this CPU: " + "; ".join(f"`{name}` ({reason})" for name, reason in sorted(skipped.items())) + "."


# the generate task (seq2seq): reports/seq2seq.md
METRIC_NAMES = {"chrf": "chrF", "rouge_l": "ROUGE-L F1 x 100", "punctuation_f1": "punctuation F1 x 100"}
COPY_ROW = "(the source copied)"


def generation_answer_lines(
    rows: dict[str, dict], best: str | None, budget: float, references: list[str], metric: str
) -> list[str]:
    """The report's answer (`best`, `quantpipe.seq2seq.compare.answer`): the fastest model within budget, by how
    much it beats PyTorch fp32 and each of `references` that it has ratios to (PyTorch fp32 on one thread, the
    engines' defaults that ran), the faster PyTorch fp32 named, its batched throughput and its memory."""
    if best is None:
        return [f"No model is within {budget:g} {metric} point(s) of PyTorch fp32."]
    r = rows[best]

    def ratio(key: str) -> str:
        return f"{r[f'{key}_median']:.2f}x [{r[f'{key}_min']:.2f}, {r[f'{key}_max']:.2f}]"

    line = (
        f"**Answer: {best}** ({r['serving']}), the fastest per call within {budget:g} {metric} point(s) of PyTorch fp32 "
        f"(Δ {r['quality_delta']:+.2f} [{r['quality_delta_ci_low']:+.2f}, {r['quality_delta_ci_high']:+.2f}]): "
        f"{ratio('call_speedup')} PyTorch fp32 per call"
    )
    fp32 = {SEQ2SEQ_BASELINE: r["call_speedup_median"]}
    for ref in references:
        if f"call_speedup_vs_{ref}_median" in r and ref != best:
            line += f", {ratio(f'call_speedup_vs_{ref}')} {ref}"
            if ref in SEQ2SEQ_FP32:
                fp32[ref] = r[f"call_speedup_vs_{ref}_median"]
    if len(fp32) > 1:
        faster = min(fp32, key=fp32.get)
        line += f" ({faster} is the faster PyTorch fp32 here: {fp32[faster]:.2f}x it)"
    line += f"; batched tokens/s {r['tokens_per_second_ratio_median']:.2f}x PyTorch fp32's"
    if "rss_after_load_ratio" in r:
        line += f"; RSS after load {r['rss_after_load_mb']:.0f} MB, {r['rss_after_load_ratio']:.2f}x PyTorch fp32's"
    return [line + f", one call +{r['one_call_increment_mb']:.1f} MB."]


def copy_lines(rows: dict[str, dict], copy: dict, metric: str) -> list[str]:
    """Doing nothing beside PyTorch fp32: the sources copied as outputs, scored by the metric, chrF and the task's
    scores, and each score on which the fp32 model does not beat it."""
    lines = [
        (
            f"Doing nothing (each source copied as its output): {metric} {copy['quality']:.2f} "
            f"[{copy['quality_ci_low']:.2f}, {copy['quality_ci_high']:.2f}], chrF {copy['chrf']:.2f}, punctuation F1 "
            f"{copy['punctuation_f1']:.3f}, words kept {copy['words_kept']:.1%}."
        )
    ]
    base = rows.get(SEQ2SEQ_BASELINE)
    if base:
        lines[0] += (
            f" PyTorch fp32: {metric} {base['quality']:.2f}, chrF {base['chrf']:.2f}, punctuation F1 "
            f"{base['punctuation_f1']:.3f} (precision {base['punctuation_precision']:.3f}, recall "
            f"{base['punctuation_recall']:.3f}), words kept {base['words_kept']:.1%}."
        )
        beaten = {"chrF": (base["chrf"], copy["chrf"]), metric: (base["quality"], copy["quality"])}
        for name in [name for name, (model, nothing) in beaten.items() if model <= nothing]:
            lines += [
                "",
                (
                    f"**PyTorch fp32 does not beat copying its input on {name}**: its quality figures say little "
                    "about what a variant costs a user until the model does the task better than copying."
                ),
            ]
    return lines


def generation_markdown(
    rows: dict[str, dict],
    best: str | None,
    timings: dict[str, dict],
    environment: dict | None,
    cfg,
    examples: int,
    references: list[str],
    skipped: dict[str, str],
    copy: dict | None = None,
) -> str:
    """The seq2seq report (task generate): the CPU, how it was measured, one row per model of
    `quantpipe.seq2seq.compare.summary`, the models skipped on this CPU with their reason, the answer `best` against
    PyTorch fp32 and the `references` that ran, doing nothing (`copy`, the sources copied, where source and target
    share their words) and the shuffled-reference control."""
    lines = ["# quantpipe seq2seq comparison", ""]
    if environment:
        lines += [cpu_line(environment["cpu"]), ""]
    rounds = len(next(iter(timings.values()))["examples_per_second"])
    metric = METRIC_NAMES[cfg.metric]
    lines += [
        f"Greedy decoding of at most {cfg.max_new_tokens} new tokens. Quality: {metric} (0-100) of the {examples} eval",
        "outputs (each stopping at its end token) against the references, with a bootstrap 95% CI; Δ: minus",
        "PyTorch fp32's, paired per example, in points, bootstrap 95% CI; identical: the share of outputs equal to",
        f"PyTorch fp32's. Speed: all models in one process, {rounds} rounds in a balanced order; per-call speed-up:",
        "PyTorch fp32's p50 latency at batch size 1 divided by the model's, round by round, median [min, max];",
        f"tokens/s: batches of {cfg.batch_size} (a model with streams runs that many batches at once); every timed",
        f"call makes exactly {cfg.max_new_tokens} tokens, on {cfg.threads} threads unless its row says. PyTorch",
        "generates with its key/value cache (transformers' default); the no-cache column divides",
        "pytorch_fp32_no_cache's p50 instead (the prefix recomputed at each step). The ONNX Runtime and OpenVINO",
        "models decode with their cache, in numpy (`quantpipe.seq2seq.lean`, neither torch nor transformers",
        "imported). Memory: each model in its own fresh process: RSS after loading, the increment of the first call",
        "and of a later one (memory_profiler-style), the peak.",
        "",
        (
            f"| model | served by | {metric} [95% CI] | Δ points [95% CI] | identical | p50/p95/p99 ms | per-call speed-up"
            " | vs no cache | tokens/s ratio | size MB (encoder / decoders; PyTorch: one file) | RSS after load MB"
            " | first / later call +MB | peak RSS MB |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["call_speedup_median"]):
        files = sorted((k for k in r if k.startswith("size_mb_")), key=lambda k: "encoder" not in k)  # encoder first
        parts = " / ".join(f"{r[k]:.1f}" for k in files)
        lines.append(
            f"| {name} | {r['serving']} | {r['quality']:.2f} [{r['quality_ci_low']:.2f}, {r['quality_ci_high']:.2f}] "
            f"| {r['quality_delta']:+.2f} [{r['quality_delta_ci_low']:+.2f}, "
            f"{r['quality_delta_ci_high']:+.2f}] | {r['identical_to_fp32']:.2f} | {r['p50_ms']:.0f}/{r['p95_ms']:.0f}/{r['p99_ms']:.0f} "
            f"| {r['call_speedup_median']:.2f}x [{r['call_speedup_min']:.2f}, {r['call_speedup_max']:.2f}] "
            f"| {r['call_speedup_no_cache_median']:.2f}x [{r['call_speedup_no_cache_min']:.2f}, "
            f"{r['call_speedup_no_cache_max']:.2f}] | {r['tokens_per_second_ratio_median']:.2f}x | {r['size_mb']:.1f} ({parts or '-'}) "
            f"| {r['rss_after_load_mb']:.0f} | {r['first_call_increment_mb']:.1f} / {r['one_call_increment_mb']:.1f} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    if copy:
        lines += [
            "",
            "| model | punctuation precision | recall | F1 | words kept | chrF |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in [*sorted(rows.items(), key=lambda kv: -kv[1]["punctuation_f1"]), (COPY_ROW, copy)]:
            lines.append(
                f"| {name} | {r['punctuation_precision']:.3f} | {r['punctuation_recall']:.3f} "
                f"| {r['punctuation_f1']:.3f} | {r['words_kept']:.1%} | {r['chrf']:.2f} |"
            )
    if skipped:
        lines += ["", skipped_line(skipped)]
    lines += ["", *generation_answer_lines(rows, best, cfg.budget, references, metric)]
    if copy:
        lines += ["", *copy_lines(rows, copy, metric)]
    base = rows.get(SEQ2SEQ_BASELINE)
    if base:
        lines += [
            "",
            (
                f"Does the model read its input? PyTorch fp32's outputs score {metric} {base['quality']:.2f} against "
                f"their own references and {base['quality_shuffled']:.2f} against those of other inputs (a seeded "
                "shuffle)."
            ),
        ]
    return "\n".join(lines) + "\n"
