"""The studio's Gradio interface: Compare, Erase and Report tabs over a `Studio`."""

import gradio as gr

from erase_diffusion.defaults import RENDERER_LEVERS, STEPS_PER_CONCEPT
from erase_diffusion.errors import UsageError
from erase_diffusion.families import detect_family
from erase_diffusion.miniature import world
from erase_diffusion.train import PHASES

from .charts import enlarge, leak_chart
from .limits import MAX_GUIDANCE, MAX_IMAGES, MAX_STEPS

EXAMPLES = [["a red triangle"], ["a blue three-sided shape"], ["a green wedge"], ["a yellow star"],
            ["a red triangle and a blue circle"], ["a purple heart and a green triangle"], ["a orange cross"]]


def _friendly(fn):
    """Bad input becomes a gr.Error naming the value; the app keeps serving."""
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UsageError as e:
            raise gr.Error(str(e)) from None
    wrapped.__name__ = fn.__name__
    return wrapped


def pairs_gallery(seeds, before, after):
    """Original beside erased for each seed (two columns), enlarged, with the verdict and leak under each."""
    items = []
    for seed, pair in zip(seeds, zip(before, after)):
        for model, (im, words, leak) in zip(("original", "erased"), pair):
            leak_text = f" · leak {leak:.2f}" if leak is not None else ""
            items.append((enlarge(im), f"seed {seed} · {model}: {words}{leak_text}"))
    return items


def build_ui(studio):
    from .report_tab import report_view

    native = studio.original.unet.config.sample_size * studio.original.vae_scale_factor
    choices = studio.erasures()
    is_world = studio.judge is not None

    @_friendly
    def generate(prompt, negative_prompt, seed, num_images, steps, guidance, size, erasure, strength):
        seeds, before, after = studio.generate(prompt, negative_prompt, seed, num_images, steps, guidance, size,
                                               erasure, strength)
        verdicts = {m: [{"seed": s, "label": words, "leak": leak} for s, (_, words, leak) in zip(seeds, items)]
                    for m, items in (("original", before), ("erased", after))}
        return pairs_gallery(seeds, before, after), leak_chart(prompt, seeds, before, after), verdicts

    @_friendly
    def upload(file):
        path = studio.import_zip(file)
        new = studio.erasures()
        return f"Loaded `{path}`.", gr.update(choices=new, value=path), gr.update(choices=new, value=path)

    @_friendly
    def erase(concepts, steps, progress=gr.Progress(track_tqdm=True)):
        def on_phase(name):
            progress(PHASES.index(name) / len(PHASES), desc=f"{name} ({PHASES.index(name) + 1}/{len(PHASES)})")

        from .files import pack_erasure

        out, record = studio.erase(concepts, steps, on_phase)
        new = studio.erasures()
        metrics = record.get("judge_metrics") or {}
        numbers = metrics.get("summary", "no judged validation")
        files = [f for f in pack_erasure(out, studio.erasures_dir) if f]
        note = (f"Erased **{', '.join(record['concepts'])}** in {record['seconds'].get('train', 0):.0f} s of training "
                f"→ `{out}`\n\nJudged, original → erased: {numbers}")
        return note, files, gr.update(choices=new, value=out), gr.update(choices=new, value=out)

    @_friendly
    def report(erasure, progress=gr.Progress(track_tqdm=True)):
        return report_view(studio, studio.resolve(erasure))

    with gr.Blocks(title="erase-diffusion studio") as demo:
        gr.Markdown("## erase-diffusion studio\nThe same UNet and the same noise, driven by the original and by the "
                    "erased text encoder. Under every image: the independent judge's verdict and the erased concept's "
                    "leak probability.")
        with gr.Tab("Compare", id="compare"):
            with gr.Row():
                prompt = gr.Textbox(label="Prompt", value="a red triangle", scale=3)
                negative = gr.Textbox(label="Negative prompt", scale=2)
            with gr.Row():
                # custom values too (an erasure made by another session); the studio reads none outside its folder
                erasure = gr.Dropdown(choices=choices, value=choices[0] if choices else None, label="Erasure", scale=3,
                                      allow_custom_value=True, elem_id="erasure")
                strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Erasure strength")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, label="Seed")
                num_images = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Images")
                steps = gr.Slider(1, MAX_STEPS, value=20, step=1, label="Steps")
                guidance = gr.Slider(0, MAX_GUIDANCE, value=5.0, step=0.5, label="Guidance")
                size = gr.Number(value=native, precision=0, label="Height (px)")
            go = gr.Button("Generate", variant="primary", elem_id="generate")
            gallery = gr.Gallery(label="Original | erased (same seed side by side)", format="png", columns=2,
                                 height="auto", object_fit="contain", elem_id="pairs")
            chart = gr.HTML(elem_id="leak-chart")
            verdicts = gr.JSON(label="Verdicts", visible=False)
            if is_world:
                gr.Examples(EXAMPLES, inputs=[prompt], label="Examples: forget, paraphrases, retain, two objects")
            with gr.Accordion("Load an erasure (.zip)", open=False):
                zip_file = gr.File(label="Erasure .zip", file_types=[".zip"], elem_id="upload")
                upload_status = gr.Markdown()
            go.click(generate, [prompt, negative, seed, num_images, steps, guidance, size, erasure, strength],
                     [gallery, chart, verdicts], api_name="generate")
        with gr.Tab("Erase", id="erase"):
            if is_world:
                concepts = gr.CheckboxGroup(list(world.SHAPES), value=["triangle"], label="Concepts to erase")
            else:
                concepts = gr.Dropdown([], multiselect=True, allow_custom_value=True, label="Concepts to erase")
            # erase's own default: fewer steps wherever the first-order set runs, which SDXL's conditioning does not
            with_set = detect_family(studio.base) != "sdxl"
            per_concept = RENDERER_LEVERS["steps_per_concept"] if with_set else STEPS_PER_CONCEPT
            erase_steps = gr.Slider(10, 1000, value=per_concept, step=10, label="Steps",
                                    info=f"{per_concept} per concept erased", elem_id="erase-steps")
            run = gr.Button("Erase", variant="primary", elem_id="erase")
            status = gr.Markdown(elem_id="erase-status")
            downloads = gr.File(label="Download", file_count="multiple", elem_id="downloads")
        with gr.Tab("Report", id="report"):
            report_erasure = gr.Dropdown(choices=choices, value=choices[0] if choices else None, label="Erasure",
                                         allow_custom_value=True, elem_id="report-erasure")
            evaluate = gr.Button("Open the evaluation (run it once if there is none)", variant="primary",
                                 elem_id="open-report")
            numbers = gr.Markdown(elem_id="report-numbers")
            plots = gr.Gallery(label="Plots and adversarial images", format="png", columns=2, elem_id="report-plots")
            evaluate.click(report, [report_erasure], [numbers, plots], api_name="report")
        run.click(erase, [concepts, erase_steps], [status, downloads, erasure, report_erasure], api_name="erase")
        zip_file.upload(upload, [zip_file], [upload_status, erasure, report_erasure], api_name="upload")
    return demo
