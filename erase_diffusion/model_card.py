"""The model card (README.md) written beside every saved erasure."""

import json


def _metrics_table(metrics):
    if not metrics:
        return "No judged validation (the independent judge covers the miniature's world only).\n"
    o, e = metrics["original"], metrics["erased"]
    lines = ["| prompts | original | erased |", "|---|---|---|"]
    for group in ("forget", "paraphrase", "retain"):
        for shape, acc in o[group].items():
            lines.append(f"| {group}: {shape} | {acc:.0%} | {e[group][shape]:.0%} |")
    lines.append(f"| colour (retain prompts) | {o['colour_retain']:.0%} | {e['colour_retain']:.0%} |")
    return "\n".join(lines) + "\n\nShare of generated images the independent judge labels as each shape " \
                              "(same seeds for original and erased).\n"


def model_card(record):
    concepts = ", ".join(record["concepts"])
    base = record["base_model"]
    if record["format"] == "lora":
        usage = f"""```python
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("{base}")
pipe.load_lora_weights("OUT")  # this directory: a LoRA on the text encoder(s)
```"""
    else:
        extra = ""
        if "text_encoder_2" in record["text_encoders"]:
            extra = ('\nte2 = CLIPTextModelWithProjection.from_pretrained("OUT", subfolder="text_encoder_2")'
                     "\npipe = StableDiffusionXLPipeline.from_pretrained(BASE, text_encoder=te, text_encoder_2=te2)")
        else:
            extra = "\npipe = StableDiffusionPipeline.from_pretrained(BASE, text_encoder=te)"
        usage = f"""```python
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from transformers import CLIPTextModel, CLIPTextModelWithProjection

BASE = "{base}"
te = CLIPTextModel.from_pretrained("OUT", subfolder="text_encoder"){extra}
```"""
    flags = json.dumps({k: v for k, v in record["flags"].items() if v is not None}, indent=1, default=str)
    return f"""---
library_name: diffusers
tags: [concept-erasure, cliperase, text-encoder, erase-diffusion]
base_model: {base}
---

# Erasure of: {concepts}

A CLIP text encoder of `{base}` ({record['family']}) unlearned with erase-diffusion's CLIPErase loop
(objective `{record['objective']}`, anchor `{record['anchor'] or "''"}`), so the pipeline stops drawing **{concepts}**
while keeping {', '.join(record['retain_concepts'])}. Only the text encoder changed: the UNet and VAE are the base's.

## Use it (plain diffusers; replace OUT by this directory)

{usage}

## Judged validation

{_metrics_table(record.get('judge_metrics'))}
Validation grids: `validation_before.png` and `validation_after.png` (rows as in erasure.json's prompts).

## What ran, and what it cost

Levers (the paper's three terms always run): `{json.dumps(record.get('levers', {}))}`.
Mined neighbours (words the original encoder places nearest the concept): `{json.dumps(record.get('neighbours', {}))}`.
Cost: `{json.dumps(record.get('costs', {}))}` (UNet evaluations count one per image and denoising step, two with
guidance); seconds per phase: `{json.dumps(record.get('seconds', {}))}`.

## Files, and the tools that read them

- `text_encoder/` (`text_encoder_2/` for SDXL): transformers' `from_pretrained`, in the hub's key layout
  (`text_model.*`), so transformers 4.x and 5.x both load it; diffusers pipelines take it as `text_encoder=`.
- `pytorch_lora_weights.safetensors` (LoRA erasures): diffusers' `pipe.load_lora_weights(OUT)`.
- `erase-diffusion export OUT --format single_file` writes the encoder(s) in the original Stable Diffusion
  checkpoint layout (`cond_stage_model.*` / `conditioner.embedders.*`), which diffusers' single-file loaders
  convert back and which tools built on the original checkpoints read once merged into a full checkpoint.

## Final losses

`{json.dumps(record['final_losses'])}`

## How it was made

Created {record['created']} with erase-diffusion {record['erase_diffusion_version']}. Flags:

```json
{flags}
```
"""
