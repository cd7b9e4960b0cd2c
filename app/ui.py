"""The studio's Gradio interface: Compare, Erase and Report tabs over a `Studio`."""

import gradio as gr
import pandas as pd

from erase_diffusion.errors import UsageError
from erase_diffusion.miniature import world

from .limits import MAX_GUIDANCE, MAX_IMAGES, MAX_STEPS


def _friendly(fn):
    """Bad input becomes a gr.Error naming the value; the app keeps serving."""
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UsageError as e:
            raise gr.Error(str(e)) from None
    wrapped.__name__ = fn.__name__
    return wrapped


def _leak_frame(before, after):
    rows = [{"image": f"#{i + 1} {model}", "model": model, "leak": leak or 0.0}
            for model, items in (("original", before), ("erased", after)) for i, (_, _, leak) in enumerate(items)]
    return pd.DataFrame(rows)


def build_ui(studio):
    native = studio.original.unet.config.sample_size * studio.original.vae_scale_factor
    choices = studio.erasures()
    is_world = studio.judge is not None

    @_friendly
    def generate(prompt, negative_prompt, seed, num_images, steps, guidance, size, erasure, strength):
        before, after = studio.generate(prompt, negative_prompt, seed, num_images, steps, guidance, size, erasure, strength)
        gallery = lambda items: [(im, f"{label} · leak {leak:.2f}" if leak is not None else label)  # noqa: E731
                                 for im, label, leak in items]
        verdicts = {m: [{"label": label, "leak": leak} for _, label, leak in items]
                    for m, items in (("original", before), ("erased", after))}
        return gallery(before), gallery(after), _leak_frame(before, after), verdicts

    @_friendly
    def erase(concepts, steps, strength, progress=gr.Progress(track_tqdm=True)):
        progress(0, desc="erasing")
        out = studio.erase(concepts, steps)
        new = studio.erasures()
        note = f"Erased {', '.join(concepts)} -> `{out}`. Selected in Compare at strength {strength}."
        return note, gr.update(choices=new, value=out), gr.update(choices=new, value=out), strength

    @_friendly
    def report(erasure, progress=gr.Progress(track_tqdm=True)):
        from .report_tab import load_or_run_report

        return load_or_run_report(studio, erasure)

    with gr.Blocks(title="erase-diffusion studio") as demo:
        gr.Markdown("## erase-diffusion studio\nThe same UNet and the same noise, driven by the original and by the "
                    "erased text encoder. Under every image: the independent judge's label and the erased concept's "
                    "leak probability.")
        with gr.Tab("Compare"):
            with gr.Row():
                prompt = gr.Textbox(label="Prompt", value="a red triangle", scale=3)
                negative = gr.Textbox(label="Negative prompt", scale=2)
            with gr.Row():
                erasure = gr.Dropdown(choices=choices, value=choices[0] if choices else None, label="Erasure",
                                      allow_custom_value=True, scale=3)
                strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Erasure strength")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, label="Seed")
                num_images = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Images")
                steps = gr.Slider(1, MAX_STEPS, value=20, step=1, label="Steps")
                guidance = gr.Slider(0, MAX_GUIDANCE, value=5.0, step=0.5, label="Guidance")
                size = gr.Number(value=native, precision=0, label="Size (px)")
            go = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Row():
                original = gr.Gallery(label="Original", format="png", columns=4, elem_id="original")
                erased = gr.Gallery(label="Erased", format="png", columns=4, elem_id="erased")
            leak = gr.BarPlot(x="image", y="leak", color="model", y_lim=[0, 1], label="Leak probability (judge)")
            verdicts = gr.JSON(label="Verdicts", visible=False)
            if is_world:
                gr.Examples([["a red triangle"], ["a blue three-sided shape"], ["a green wedge"], ["a yellow star"],
                             ["a purple heart"], ["an image of a orange cross"]], inputs=[prompt],
                            label="Examples: forget, paraphrases, retain")
            go.click(generate, [prompt, negative, seed, num_images, steps, guidance, size, erasure, strength],
                     [original, erased, leak, verdicts], api_name="generate")
        with gr.Tab("Erase"):
            if is_world:
                concepts = gr.CheckboxGroup(list(world.SHAPES), value=["triangle"], label="Concepts to erase")
            else:
                concepts = gr.Dropdown([], multiselect=True, allow_custom_value=True, label="Concepts to erase")
            with gr.Row():
                erase_steps = gr.Slider(10, 1000, value=300, step=10, label="Steps")
                erase_strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Strength to show it at")
            run = gr.Button("Erase", variant="primary")
            status = gr.Markdown()
        with gr.Tab("Report"):
            report_erasure = gr.Dropdown(choices=choices, value=choices[0] if choices else None, label="Erasure",
                                         allow_custom_value=True)
            evaluate = gr.Button("Open or run the evaluation", variant="primary")
            numbers = gr.Markdown()
            plots = gr.Gallery(label="Plots", format="png", columns=2)
            evaluate.click(report, [report_erasure], [numbers, plots])
        run.click(erase, [concepts, erase_steps, erase_strength], [status, erasure, report_erasure, strength])
    return demo
