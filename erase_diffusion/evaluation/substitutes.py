"""What an erased model draws instead: clip-interrogator's LabelTable, driven by the judge CLIP, ranks the world's
phrases for each erased image. Offline: no caption model, no downloaded label caches, nothing written to disk.
"""

import warnings
from collections import Counter

import open_clip
import torch
from clip_interrogator import Config, Interrogator, LabelTable

from ..miniature import world
from ..miniature.train_judge import MODEL_NAME


class JudgeInterrogator(Interrogator):
    """An Interrogator bound to the judge and nothing else: the stock __init__ would load a caption model and embed
    clip-interrogator's 100k art-prompt phrases, none of which the miniature's world has words for."""

    def __init__(self, config):
        self.config, self.device, self.dtype = config, config.device, torch.float32
        self.caption_model = self.caption_processor = None
        self.caption_offloaded, self.clip_offloaded = True, False
        self.clip_model, self.clip_preprocess = config.clip_model, config.clip_preprocess
        self.tokenize = open_clip.get_tokenizer(MODEL_NAME)


def world_labels():
    """Every "a {colour} {thing}" the world can name: its shapes, their paraphrases and the neutral blob."""
    things = [w for s in world.SHAPES for w in world.shape_words(s, held_out=True)] + [world.NEUTRAL]
    return [f"a {c} {t}" for t in things for c in world.COLOURS]


def thing(label):
    """"a red wedge" -> "triangle": what the label names, whatever its colour or wording."""
    words = label.split(" ", 2)[2]
    return next((s for s in world.SHAPES if words in world.shape_words(s, held_out=True)), words)


def interrogator(judge):
    config = Config(clip_model_name=f"{MODEL_NAME}/none", caption_model_name=None, download_cache=False,
                    cache_path=None, device=judge.device, quiet=True)
    config.clip_model, config.clip_preprocess = judge.model, judge.preprocess  # Config() takes no model arguments
    return JudgeInterrogator(config)


def describe(judge, images, top_count=3):
    """For each image, its `top_count` best world labels, best first."""
    ci = interrogator(judge)
    with warnings.catch_warnings():  # clip-interrogator wraps its matmuls in torch.cuda.amp.autocast, even on CPU
        warnings.simplefilter("ignore")
        table = LabelTable(world_labels(), None, ci)  # no description: no cache read, written or downloaded
        features = judge.encode_images(images)
        return [table.rank(f[None], top_count=top_count) for f in features]


def top_substitutes(rankings, top_count=3):
    """[{'thing', 'share'}]: the things most often ranked first, with the share of images they describe best."""
    counts = Counter(thing(r[0]) for r in rankings)
    return [{"thing": t, "share": n / len(rankings)} for t, n in counts.most_common(top_count)]
