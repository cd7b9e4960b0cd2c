"""--tie_names: the concept's name reads the anchor's token-embedding row, in training and in the saved encoder."""

import torch

import quick
from erase_diffusion.train import main, parse_args

QUICK = quick.TRIANGLE


def test_the_name_reads_the_anchors_row_so_whatever_follows_it_reads_the_anchor(tmp_path):
    from safetensors.torch import load_file
    from transformers import CLIPTextModel, CLIPTokenizer

    from erase_diffusion.erasure_setup import name_alias
    from erase_diffusion.families import load_encoders
    from erase_diffusion.miniature import clip_path, model_path

    record = main(parse_args([*QUICK, "--output_dir", str(tmp_path / "tied")]))["record"]  # on the renderer's data
    assert record["levers"]["tie_names"] and record["tied_names"] == ["triangle"]
    assert record["levers"]["name_row"] == 100.0 and "name_row" in record["final_losses"]  # the own row read too
    tok = CLIPTokenizer.from_pretrained(tmp_path / "tied" / "tokenizer")
    rows = load_file(tmp_path / "tied" / "text_encoder" / "model.safetensors")["text_model.embeddings.token_embedding.weight"]
    name, anchor = (tok(w, add_special_tokens=False).input_ids[0] for w in ("triangle", "blob"))
    assert torch.equal(rows[name], rows[anchor])
    # an ordinary CLIPTextModel: a prompt with the name, a suffix and a kept object beside it is its anchored prompt
    model = CLIPTextModel.from_pretrained(tmp_path / "tied" / "text_encoder").eval()
    ids = tok(["a red triangle and a blue circle zq", "a red blob and a blue circle zq"], padding="max_length",
              return_tensors="pt").input_ids
    with torch.no_grad():
        states = model(ids)[0]
    assert torch.equal(states[0], states[1])

    record = main(parse_args([*QUICK, "--output_dir", str(tmp_path / "untied"), "--no-tie_names"]))["record"]
    rows = load_file(tmp_path / "untied" / "text_encoder" / "model.safetensors")["text_model.embeddings.token_embedding.weight"]
    assert not record["levers"]["tie_names"] and record["tied_names"] == [] and "name_row" not in record["final_losses"]
    assert not torch.equal(rows[name], rows[anchor])
    enc = load_encoders(model_path(), "miniature", [clip_path()])[0]
    assert name_alias(enc, ["triangle"], "four-sided shape") == (None, [])  # an input row is one token's
