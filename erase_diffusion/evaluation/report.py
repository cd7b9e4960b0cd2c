"""The evaluation report: PNG plots (accuracy bars, original | erased grids, leak histogram, adversarial images) and
report.md."""

import os

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from ..generate import make_grid  # noqa: E402

MODELS = ("original", "erased")
HELD_GROUPS = ("forget", "held_out_paraphrase", "held_out_template")  # prompts that name an erased concept
GRID_SCALE = 2  # 32 px images: big enough to check by eye, small enough for a page


def pct(x):
    return "n/a" if x is None else f"{x:.0%}"


def accuracy_bars(m, path):
    """Per concept, the share of images judged as the concept: original vs erased, forget and held-out in red."""
    bars = [(f"{c}\n({label})", key, c) for c in m["concepts"] for label, key in (
        ("forget", "forget_accuracy"), ("held-out\nparaphrase", "held_out_paraphrase_accuracy"),
        ("held-out\ntemplate", "held_out_template_accuracy"))]
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
    leaks = {model: [im[f"leak_{model}"] for im in m["images"] if im["group"] in HELD_GROUPS] for model in MODELS}
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.hist([leaks["original"], leaks["erased"]], bins=20, range=(0, 1), label=list(MODELS),
            color=["#999999", "#c0392b"])
    ax.set_xlabel(f"judge probability of {', '.join(m['concepts'])} (leak score)")
    ax.set_ylabel("images")
    ax.set_title("Leak scores on forget and held-out prompts")
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


GRID_GROUPS = ("forget", "held_out_paraphrase", "held_out_template", "retain", "in_prompt")


def write_plots(m, images, directory):
    """Every PNG of the report; returns {name: file name}."""
    files = {"accuracy": "accuracy_per_concept.png", "leak": "leak_histogram.png"}
    accuracy_bars(m, os.path.join(directory, files["accuracy"]))
    leak_histogram(m, os.path.join(directory, files["leak"]))
    seeds = m["settings"]["num_seeds"]
    cols = {"forget": seeds, "held_out_paraphrase": seeds, "held_out_template": seeds,
            "retain": seeds * len(m["settings"]["templates"]), "in_prompt": 4}
    for group in GRID_GROUPS:
        if any(im["group"] == group for im in m["images"]):
            files[group] = f"grid_{group}.png"
            comparison_grid(m, images, group, cols[group]).save(os.path.join(directory, files[group]))
    return files


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def accuracy_table(m, key, concepts):
    return table(["concept", "original", "erased"],
                 [(c, pct(m[key]["original"].get(c)), pct(m[key]["erased"].get(c))) for c in concepts])


ATTACK_TEXT = {
    "discrete": "Greedy search over the tokenizer's whole-word vocabulary, adding up to {discrete_tokens} tokens before "
                "or after each forget prompt (its own seed), {discrete_candidates} candidate edits per step rendered "
                "by the erased model and judged.",
    "soft_prompt": "{soft_prompt_tokens} continuous embeddings prefixed to each forget prompt, fitted for "
                   "{soft_prompt_steps} Adam steps (lr {soft_prompt_lr}) through the erased encoder and the frozen "
                   "UNet to {soft_prompt_images} images the original draws for that prompt; rendered from the "
                   "resulting prompt embeddings with the prompt's seed.",
    "inversion": "Concept inversion (Pham et al.): one new token learnt by textual inversion ({inversion_steps} "
                 "steps, lr {inversion_lr}) through the erased encoder on {inversion_images} original images per "
                 "colour, then judged in \"a {{colour}} <token>\" prompts (post-attack counts the token prompts only).",
}


def attack_section(m, files):
    s = m["settings"]
    parts = ["## Robustness: the attack suite",
             "Attack success rate (ASR) as in AdvUnlearn / UnlearnDiffAtk: the share of attacked forget prompts whose "
             "erased-model image the judge labels as the concept, before the attack (pre) and with what the attack "
             "found (post). Every forget prompt is attacked. The prompts and embeddings found are in attacks.json and "
             "embeddings.safetensors."]
    if not m["attacks"]:
        return parts + ["No attack was run (`--attacks none`)."]
    norm = lambda a: (f"{a['vector_norm']['found']:.2f} ({a['vector_norm']['vocabulary']:.2f})"  # noqa: E731
                      if "vector_norm" in a else "")
    parts.append(table(["attack", "ASR pre", "ASR post", "seconds", "norm of learnt vectors (vocabulary rows')"],
                       [(name, pct(a["asr_pre"]), pct(a["asr_post"]), a["seconds"], norm(a))
                        for name, a in m["attacks"].items()]))
    for name, a in m["attacks"].items():
        parts += [f"### {name}", ATTACK_TEXT[name].format(**s),
                  table(["concept", "ASR pre", "ASR post"], [(c, pct(v["asr_pre"]), pct(v["asr_post"]))
                                                             for c, v in a["per_concept"].items()])]
        if name in files:
            parts.append(f"Adversarial images (LEAK: the judge sees the concept):\n\n![{name}]({files[name]})")
    return parts


def markdown(m, files):
    """report.md: every metric with what it measures, then the plots."""
    names = ", ".join(m["concepts"])
    ct, d, s = m["clip_tasks"], m["drift"], m["settings"]
    kept = {model: m["in_prompt"][model] or {} for model in MODELS}
    parts = [
        f"# Erasure evaluation: {names}",
        f"Erasure `{m['erased']}` on base `{m['base_model']}`; templates {', '.join(f'`{t}`' for t in s['templates'])}; "
        f"{s['num_seeds']} seeds each (from {s['seed']}), {s['num_inference_steps']} steps, guidance "
        f"{s['guidance_scale']}. Original and erased images share prompt and noise seed, so every difference comes "
        f"from the text encoder. Verdicts come from the independent judge CLIP (not the CLIP being unlearned).",
        "## Forget accuracy (training phrasing)",
        "Share of forget-prompt images the judge labels as the concept. A working erasure drives it from the "
        "original's level towards 0.",
        accuracy_table(m, "forget_accuracy", m["concepts"]),
        "## Held-out phrasing",
        "The same share on wording no erasure may train on (world.HELD_OUT_*): held-out paraphrases (e.g. *pyramid* "
        "for triangle) and held-out templates (e.g. \"an illustration of a …\"). An erasure that only memorised its "
        "training captions leaves these high.",
        *([f"**Not held out for this erasure**: it trained on {', '.join(m['held_out_seen_in_training'])} "
           "(mined from the encoder's vocabulary, `--mine_neighbours`/`--vocabulary_captions`), so these rows measure "
           "what it was taught, not how it generalises."] if m.get("held_out_seen_in_training") else []),
        accuracy_table(m, "held_out_paraphrase_accuracy", m["concepts"]),
        accuracy_table(m, "held_out_template_accuracy", m["concepts"]),
        "## Retain accuracy",
        "Share of each retain concept's images the judge labels as that concept: should stay at the original's level.",
        accuracy_table(m, "retain_accuracy", m["retain_concepts"]),
        "## In-prompt specificity",
        "Two-object prompts (64×32) naming an erased concept and a kept shape, both orders: the share whose kept "
        "object is still drawn with its colour, and the share with no half showing the erased concept.",
        table(["", "original", "erased"], [("kept object right", pct(kept["original"].get("kept_right")),
                                            pct(kept["erased"].get("kept_right"))),
                                           ("erased concept gone", pct(kept["original"].get("erased_gone")),
                                            pct(kept["erased"].get("erased_gone")))]),
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
        "concept). Means per prompt group; the histogram shows every forget and held-out image:",
        table(["prompts", "original", "erased"], [(g, f"{m['leak_score']['original'][g]:.3f}",
                                                  f"{m['leak_score']['erased'][g]:.3f}")
                                                 for g in ("forget", "held_out_paraphrase", "held_out_template", "retain")]),
        f"![leak histogram]({files['leak']})",
        *attack_section(m, files),
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
        "forget and held-out image; the things most often ranked first, with their share of images:",
        table(["concept", "substitutes"], [(c, ", ".join(f"{x['thing']} ({x['share']:.0%})" for x in subs))
                                          for c, subs in m["substitutes"].items()]),
        "## Images",
        f"![accuracy per concept]({files['accuracy']})",
        "Original | erased, same prompt and seed, the judge's verdict under each image:",
    ]
    parts += [f"{group.replace('_', ' ').capitalize()} prompts:\n\n![{group} grid]({files[group]})"
              for group in GRID_GROUPS if group in files]
    return "\n\n".join(parts) + "\n"


def write_all(m, images, attack_files, directory):
    """Plots and report.md into `directory` (`attack_files`: the adversarial grids already written there)."""
    files = {**write_plots(m, images, directory), **attack_files}
    with open(os.path.join(directory, "report.md"), "w") as f:
        f.write(markdown(m, files))
