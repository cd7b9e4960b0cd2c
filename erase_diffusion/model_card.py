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

## Final losses

`{json.dumps(record['final_losses'])}`

## How it was made

Created {record['created']} with erase-diffusion {record['erase_diffusion_version']}. Flags:

```json
{flags}
```
"""
