"""What the Compare tab shows: crisp enlarged images, and the judge's leak scores as a chart grouped by seed in
which a zero is still visible (a marker and a value label, not an absent bar)."""

import html

from PIL import Image

DISPLAY_HEIGHT = 192  # 32 px images at 6x: nearest-neighbour keeps every pixel a sharp square


def enlarge(image, height=DISPLAY_HEIGHT):
    """`image` scaled up by a whole factor with nearest-neighbour, so 32x32 and 64x32 stay crisp."""
    factor = max(1, height // image.height)
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def leak_chart(prompt, seeds, before, after):
    """HTML bars of the leak probability, original beside erased for each seed; a zero gets a marker and '0.00'."""
    groups = []
    for seed, (_, _, leak_o), (_, _, leak_e) in zip(seeds, before, after):
        bars = []
        for model, leak in (("original", leak_o), ("erased", leak_e)):
            if leak is None:
                continue
            height = max(0.0, min(1.0, leak)) * 100
            zero = leak < 0.005
            marker = '<div class="leak-zero" title="no leak">&#9679; 0</div>' if zero else ""
            bars.append(
                f'<div class="leak-bar-wrap"><div class="leak-value">{leak:.2f}</div>'
                f'<div class="leak-bar leak-{model}" style="height:{height:.1f}px"></div>{marker}'
                f'<div class="leak-model">{model}</div></div>')
        groups.append(f'<div class="leak-group"><div class="leak-bars">{"".join(bars)}</div>'
                      f'<div class="leak-seed">seed {seed}</div></div>')
    return (f'<div class="leak-chart"><div class="leak-title">Leak probability (judge) for '
            f'“{html.escape(prompt)}”, per seed</div><div class="leak-groups">{"".join(groups)}</div></div>')


CSS = """
.leak-chart { font-family: sans-serif; font-size: 12px; }
.leak-title { font-weight: 600; margin-bottom: 6px; }
.leak-groups { display: flex; gap: 18px; align-items: flex-end; flex-wrap: wrap; }
.leak-group { display: flex; flex-direction: column; align-items: center; }
.leak-bars { display: flex; gap: 4px; align-items: flex-end; height: 150px; border-bottom: 1px solid #888; }
.leak-bar-wrap { display: flex; flex-direction: column; align-items: center; justify-content: flex-end; width: 54px; }
.leak-bar { width: 30px; min-height: 2px; }
.leak-original { background: #9e9e9e; }
.leak-erased { background: #c0392b; }
.leak-zero { color: #1e8449; font-weight: 700; }
.leak-value, .leak-model, .leak-seed { white-space: nowrap; }
"""
