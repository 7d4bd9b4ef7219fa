"""Figures written beside ``metrics.json``."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_w_subspaces(w_mean, y, label_names, w_dim, path, max_points=2000):
    """Scatter of each label's subspace ``W_i`` (first two dims), coloured by ``y_i``.

    Args:
      w_mean: ``[n, k*w_dim]`` posterior means.
      y: ``[n, k]`` labels.
    """
    k = len(label_names)
    fig, axes = plt.subplots(1, k, figsize=(4 * k, 4), squeeze=False)
    idx = np.random.default_rng(0).permutation(len(w_mean))[:max_points]
    for i, ax in enumerate(axes[0]):
        w_i = w_mean[idx, i * w_dim : i * w_dim + 2]
        for value, colour in ((0, "tab:blue"), (1, "tab:orange")):
            sel = y[idx, i] == value
            ax.scatter(w_i[sel, 0], w_i[sel, 1], s=4, alpha=0.5, c=colour, label=f"{label_names[i]}={value}")
        ax.set_title(f"W for {label_names[i]}")
        ax.set_xlabel("w[0]")
        ax.set_ylabel("w[1]" if w_dim > 1 else "")
        ax.legend(markerscale=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def image_grid(rows, path, row_labels=None, col_labels=None, scale=2):
    """Saves ``rows`` ``[r, c, H, W, C]`` floats in [0, 1] as one PNG grid."""
    from PIL import Image, ImageDraw

    rows = np.clip(np.asarray(rows, np.float32), 0.0, 1.0)
    r, c, h, w, ch = rows.shape
    pad = 2
    left = 70 if row_labels else 0
    top = 14 if col_labels else 0
    canvas = np.ones((top + r * (h * scale + pad), left + c * (w * scale + pad), 3), np.uint8) * 255
    for i in range(r):
        for j in range(c):
            tile = rows[i, j]
            tile = np.repeat(tile, 3, axis=-1) if ch == 1 else tile
            tile = np.kron((tile * 255).round().astype(np.uint8), np.ones((scale, scale, 1), np.uint8))
            y0, x0 = top + i * (h * scale + pad), left + j * (w * scale + pad)
            canvas[y0 : y0 + h * scale, x0 : x0 + w * scale] = tile
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for i, text in enumerate(row_labels or []):
        draw.text((2, top + i * (h * scale + pad) + 2), str(text), fill=(0, 0, 0))
    for j, text in enumerate(col_labels or []):
        draw.text((left + j * (w * scale + pad) + 2, 1), str(text), fill=(0, 0, 0))
    image.save(path, optimize=True)
