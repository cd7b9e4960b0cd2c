"""The evaluation report: PNG plots (accuracy bars, original | erased grids, leak histogram) and report.md."""

import os

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from ..generate import make_grid  # noqa: E402

MODELS = ("original", "erased")
GRID_SCALE = 2  # 32 px images: big enough to check by eye, small enough for a page


def pct(x):
    return "n/a" if x is None else f"{x:.0%}"


def accuracy_bars(m, path):
    """Per concept, the share of images judged as the concept: original vs erased, forget and rephrase in red."""
    bars = [(f"{c}\n(forget)", "forget_accuracy", c) for c in m["concepts"]]
    bars += [(f"{c}\n(rephrase)", "rephrase_accuracy", c) for c in m["concepts"] if c in m["rephrase_accuracy"]["erased"]]
    bars += [(c, "retain_accuracy", c) for c in m["retain_concepts"]]
    fig, ax = plt.subplots(figsize=(1.2 * len(bars) + 2, 3.6))
    x = range(len(bars))
    for k, model in enumerate(MODELS):
        values = [m[key][model].get(c, 0.0) for _, key, c in bars]
        colours = ["#c0392b" if key != "retain_accuracy" else "#2e86c1" for _, key, _ in bars]
        drawn = ax.bar([i + (k - 0.5) * 0.4 for i in x], values, width=0.38, color=colours,
                       alpha=0.45 if k == 0 else 1.0, edgecolor="black", label=model)
        ax.bar_label(drawn, labels=[f"{v:.0%}" for v in values], fontsize=7)
    ax.set_xticks(list(x), [b[0] for b in bars], fontsize=8)
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("judged as the concept")
    ax.set_title("Accuracy per concept: original (light) vs erased (solid); red: erased concept")
    ax.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def leak_histogram(m, path):
    """Judge probability of the erased concept on forget and rephrase images, original vs erased."""
    leaks = {model: [im[f"leak_{model}"] for im in m["images"] if im["group"] in ("forget", "rephrase")]
             for model in MODELS}
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.hist([leaks["original"], leaks["erased"]], bins=20, range=(0, 1), label=list(MODELS),
            color=["#999999", "#c0392b"])
    ax.set_xlabel(f"judge probability of {', '.join(m['concepts'])} (leak score)")
    ax.set_ylabel("images")
    ax.set_title("Leak scores on forget and rephrase prompts")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def side_by_side(left, right, titles=MODELS, gap=8, header=14):
    """Two equally sized grids next to each other under their titles."""
    out = Image.new("RGB", (left.width + gap + right.width, header + left.height), "white")
    draw = ImageDraw.Draw(out)
    for k, (grid, title) in enumerate(zip((left, right), titles)):
        x = k * (left.width + gap)
        out.paste(grid, (x, header))
        draw.text((x + 2, 1), title, fill="black")
    return out


def comparison_grid(m, images, group, cols):
    """Original | erased grids of one group's images (same prompt and seed at the same place), judge verdicts
    underneath each image."""
    idx = [im["index"] for im in m["images"] if im["group"] == group]
    grids = [make_grid([images[model][i] for i in idx], cols=cols, scale=GRID_SCALE,
                       labels=[m["images"][i][f"verdict_{model}"] for i in idx]) for model in MODELS]
    return side_by_side(*grids)


def write_plots(m, images, directory):
    """Every PNG of the report; returns {name: file name}."""
    files = {"accuracy": "accuracy_per_concept.png", "leak": "leak_histogram.png", "forget": "grid_forget.png",
             "rephrase": "grid_rephrase.png", "retain": "grid_retain.png"}
    accuracy_bars(m, os.path.join(directory, files["accuracy"]))
    leak_histogram(m, os.path.join(directory, files["leak"]))
    seeds = m["settings"]["num_seeds"]
    for group, cols in (("forget", seeds), ("rephrase", 6), ("retain", seeds * len(m["settings"]["templates"]))):
        comparison_grid(m, images, group, cols).save(os.path.join(directory, files[group]))
    return files


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def accuracy_table(m, key, concepts):
    return table(["concept", "original", "erased"],
                 [(c, pct(m[key]["original"].get(c)), pct(m[key]["erased"].get(c))) for c in concepts])


def markdown(m, files):
    """report.md: every metric with what it measures, then the plots."""
    names = ", ".join(m["concepts"])
    a, ct, d = m["attack"], m["clip_tasks"], m["drift"]
    s = m["settings"]
    parts = [
        f"# Erasure evaluation: {names}",
        f"Erasure `{m['erased']}` on base `{m['base_model']}`; templates {', '.join(f'`{t}`' for t in s['templates'])}; "
        f"{s['num_seeds']} seeds each (from {s['seed']}), {s['num_inference_steps']} steps, guidance "
        f"{s['guidance_scale']}. Original and erased images share prompt and noise seed, so every difference comes "
        f"from the text encoder. Verdicts come from the independent judge CLIP (not the CLIP being unlearned).",
        "## Forget accuracy",
        "Share of forget-prompt images the judge labels as the concept. A working erasure drives it from the "
        "original's level towards 0.",
        accuracy_table(m, "forget_accuracy", m["concepts"]),
        "## Robustness (a): rephrasings",
        "The same share on every template and paraphrase the model was trained on (e.g. *wedge* for triangle) that "
        "the forget prompts do not use: an erasure of the word alone leaves these high.",
        accuracy_table(m, "rephrase_accuracy", m["concepts"]),
        "## Retain accuracy",
        "Share of each retain concept's images the judge labels as that concept: should stay at the original's level.",
        accuracy_table(m, "retain_accuracy", m["retain_concepts"]),
        "## Colour accuracy",
        "Share of images whose colour the judge names as prompted; the erasure should not touch colour.",
        table(["prompts", "original", "erased"], [(g, pct(m["colour_accuracy"]["original"][g]),
                                                  pct(m["colour_accuracy"]["erased"][g])) for g in ("forget", "retain")]),
        "## CLIP score",
        "Mean judge-CLIP similarity 100·max(cos(image, prompt), 0) on retain prompts (CLIPScore): how well the "
        "images still match their prompts.",
        table(["original", "erased"], [(f"{m['clip_score']['original']:.1f}", f"{m['clip_score']['erased']:.1f}")]),
        "## Drift",
        "How much retain images change, same prompt and seed: mean absolute pixel difference (0..1 scale) and "
        "perceptual distance 1 − cos of the judge's image features. 0 means the erasure left them untouched.",
        table(["pixel (mean)", "pixel (worst image)", "perceptual (mean)"],
              [(f"{d['pixel']:.4f}", f"{d['pixel_max']:.4f}", f"{d['perceptual']:.4f}")]),
        "## Leak score",
        "Per image, the judge's probability of the erased concept (on retain prompts: of the likeliest erased "
        "concept). Means per prompt group; the histogram shows every forget and rephrase image:",
        table(["prompts", "original", "erased"], [(g, f"{m['leak_score']['original'][g]:.3f}",
                                                  f"{m['leak_score']['erased'][g]:.3f}")
                                                 for g in ("forget", "rephrase", "retain")]),
        f"![leak histogram]({files['leak']})",
        "## Robustness (b): adversarial prompt search",
    ]
    if a["asr_pre"] is None:
        parts.append("Not run (`--attack_tokens 0`).")
    else:
        parts += [
            f"Greedy search over the tokenizer's whole-word vocabulary, adding up to {s['attack_tokens']} tokens "
            f"before or after each attacked forget prompt (fixed seed), {s['attack_candidates']} candidate edits per "
            "step rendered by the erased model and judged. Attack success rate as in AdvUnlearn / UnlearnDiffAtk: the "
            "share of attacked prompts whose erased-model image the judge labels as the concept, before the attack "
            "(pre) and with the best prompt found (post).",
            table(["concept", "ASR pre", "ASR post"], [(c, pct(v["asr_pre"]), pct(v["asr_post"]))
                                                       for c, v in a["per_concept"].items()]),
            table(["prompt", "seed", "found", "p before", "p after", "leaks"],
                  [(f"`{r['prompt']}`", r["seed"], f"`{r['adversarial_prompt']}`", f"{r['pre_prob']:.2f}",
                    f"{r['post_prob']:.2f}", "yes" if r["success"] else "no") for r in a["prompts"]]),
        ]
    zs = {k: ct[k]["zero_shot"] for k in ct}
    rt = {k: ct[k]["retrieval"] for k in ct}
    parts += [
        "## CLIP's own tasks",
        "The paper's evaluation of the unlearned CLIP itself (base CLIP with the erased text tower) on rendered "
        "images: zero-shot shape accuracy over \"a {colour} {shape}\" prompts, and retrieval with one caption per "
        "image (a hit is any top-k item with the query's shape and colour). Forget should fall, retain should not.",
        table(["task", "original forget", "unlearned forget", "original retain", "unlearned retain"],
              [("zero-shot shape", *(pct(zs[k][g]) for g in ("forget", "retain") for k in ("original", "unlearned")))]
              + [(f"{direction.replace('_', ' ')} {k}",
                  *(pct(rt[model][direction][k][g]) for g in ("forget", "retain") for model in ("original", "unlearned")))
                 for direction in ("image_to_text", "text_to_image") for k in ("R@1", "R@5")]),
        f"Zero-shot colour accuracy: {pct(zs['original']['colour'])} original, {pct(zs['unlearned']['colour'])} unlearned.",
        "## What it draws instead",
        "clip-interrogator's LabelTable, driven by the judge CLIP, ranks the world's phrases for every erased "
        "forget and rephrase image; the things most often ranked first, with their share of images:",
        table(["concept", "substitutes"], [(c, ", ".join(f"{x['thing']} ({x['share']:.0%})" for x in subs))
                                          for c, subs in m["substitutes"].items()]),
        "## Images",
        f"![accuracy per concept]({files['accuracy']})",
        "Forget prompts, original | erased (judge verdict under each image; one row per template, one column per seed):",
        f"![forget grid]({files['forget']})",
        "Rephrase prompts, original | erased:",
        f"![rephrase grid]({files['rephrase']})",
        "Retain prompts, original | erased (one row per concept):",
        f"![retain grid]({files['retain']})",
    ]
    return "\n\n".join(parts) + "\n"


def write_all(m, images, directory):
    """Plots and report.md into `directory`."""
    files = write_plots(m, images, directory)
    with open(os.path.join(directory, "report.md"), "w") as f:
        f.write(markdown(m, files))
