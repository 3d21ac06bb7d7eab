"""A self-contained HTML report of `styleseg evaluate`: tables, matplotlib plots and sample grids,
all inlined as base64 so the file can be mailed or archived alone."""

from __future__ import annotations

import base64
import html
import io

import numpy as np
from PIL import Image

from styleseg.viz import figure_img_tag, grid, triplet, upscale, with_legend


def _png_b64(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _img(array: np.ndarray, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_png_b64(array)}">'


def _plots(metrics: dict, extents) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "<p>Plots skipped: matplotlib is not installed (pip install 'styleseg[report]').</p>"
    lb = metrics["labels"]
    names = list(lb["class_frequency_real"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    x = np.arange(len(names))
    axes[0].bar(x - 0.2, [lb["class_frequency_real"][n] for n in names], 0.4, label="real")
    axes[0].bar(x + 0.2, [lb["class_frequency_generated"][n] for n in names], 0.4, label="generated")
    axes[0].set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    axes[0].set_yscale("log")
    axes[0].set_title("pixel frequency per class")
    axes[0].legend()
    area_r, height_r, area_g, height_g = extents
    axes[1].hist([area_r, area_g], bins=20, label=["real", "generated"], density=True)
    axes[1].set_title("person area fraction")
    axes[1].legend()
    axes[2].hist([height_r, height_g], bins=20, label=["real", "generated"], density=True)
    axes[2].set_title("person height fraction")
    fig.tight_layout()
    return figure_img_tag(fig, "label statistics")


def seeds_text(first: int, n: int) -> str:
    return f"seeds {first}..{first + n - 1}"


def seed_range(m: dict) -> str:
    """The generator seeds behind a metrics.json's pairs (0..n-1 before --first-seed existed)."""
    return seeds_text(m["options"].get("first_seed", 0), m["n"])


def shared_ratio_text(agreement: dict, num_classes: int) -> str:
    """The ratio over the classes both score (older metrics.json files lack it)."""
    ratio, shared = agreement.get("ratio_over_shared_classes"), agreement.get("shared_classes")
    if ratio is None or shared is None:
        return ""
    return f"; {ratio:.2f} over the {len(shared)} of {num_classes} classes both score"


def interval_bounds(agreement: dict, name: str, digits: int) -> str:
    """' [0.483, 0.501]': the bootstrap interval of agreement figure `name` ('' in older metrics.json files)."""
    interval = agreement.get("interval")
    return f" [{interval[name][0]:.{digits}f}, {interval[name][1]:.{digits}f}]" if interval else ""


def agreement_text(agreement: dict, num_classes: int) -> str:
    """'mIoU 0.493 [0.487, 0.499] (0.82 [0.77, 0.87] of the ceiling; ...)': the headline agreement with its
    bootstrap intervals and the shared-class ratio."""
    miou, ratio = interval_bounds(agreement, "miou", 3), interval_bounds(agreement, "ratio", 2)
    never = agreement.get("never_drawn")  # evaluate version 3 on
    missing = f"; never drawn, counted 0: {', '.join(never)}" if never else ""
    return (
        f"mIoU {agreement['miou']:.3f}{miou} ({agreement['ratio_to_ceiling']:.2f}{ratio} "
        f"of the ceiling{shared_ratio_text(agreement, num_classes)}{missing})"
    )


def interval_note(agreement: dict) -> str:
    """What the brackets of `agreement_text` are, with the ceiling's own interval ('' without them)."""
    interval = agreement.get("interval")
    if not interval:
        return ""
    low, high = interval["ceiling"]
    return (
        f"brackets: {100 * interval['level']:.0f} % bootstrap intervals ({interval['draws']} resamples of the"
        f" generated pairs and of the real images); the ceiling's own is [{low:.3f}, {high:.3f}]"
    )


def per_class_rows(metrics: dict, names) -> tuple[list[list], list[str]]:
    """Agreement and ceiling per class, with the pixels each rests on where the confusions are kept
    (a rare class's IoU from a few hundred pixels moves a mean over classes as much as the background's)."""
    agreement, ceiling = metrics["agreement"], metrics["segmenter"]["val"]
    rows = [[n, agreement["per_class"][n], ceiling["iou"][n]] for n in names]
    header = ["class", "agreement IoU", "segmenter IoU on real val"]
    if "confusion" in agreement and "confusion" in ceiling:
        generated, real = np.array(agreement["confusion"]).sum(1), np.array(ceiling["confusion"]).sum(1)
        rows = [row + [int(g), int(r)] for row, g, r in zip(rows, generated, real)]
        header += ["generated mask pixels", "real val mask pixels"]
    return rows, header


def _confusion_paragraph(found: list[dict] | None) -> str:
    """Where generated masks and images part ways most, beyond the reference's habits on real masks."""
    if not found:
        return ""
    rows = [[f["class"], f["read_as"], f["generated"], f["real"], f["generated_pixels"]] for f in found]
    return "<p>Where the reference reads generated masks' classes otherwise than it reads real masks:</p>" + _table(
        rows, ["mask class", "read as", "share, generated", "share, real", "generated pixels"]
    )


def _table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def usefulness_rows(use: dict, split: str = "val") -> list[list]:
    rows = []
    for name, r in use.items():
        if split not in r:
            continue
        d = r.get("difference", {}).get(split)
        interval = (
            ""
            if not d
            else (f"{d['mean']:+.3f}" + ("" if d["low"] is None else f" [{d['low']:+.3f}, {d['high']:+.3f}]"))
        )
        rows.append(
            [
                name,
                r[split]["mean"],
                r[split]["std"],
                r[split]["n_seeds"],
                r["generated_pairs"],
                interval,
                d["verdict"] if d else "baseline",
            ]
        )
    return rows


USEFULNESS_HEADER = ["training data", "mIoU mean", "std", "seeds", "generated pairs", "paired diff [95% CI]", "verdict"]


def _usefulness_plot(use: dict) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ""
    names = list(use)
    if not names:
        return ""
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 3.5))
    means = [use[n]["val"]["mean"] for n in names]
    stds = [use[n]["val"]["std"] for n in names]
    ax.bar(
        range(len(names)),
        means,
        yerr=stds,
        capsize=4,
        color=["#888" if not use[n]["regime"]["generated"] else "#4a7" for n in names],
    )
    for i, n in enumerate(names):
        ax.scatter([i] * len(use[n]["val"]["values"]), use[n]["val"]["values"], color="k", s=8, zorder=3)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("segmenter mIoU (real val, report half)")
    ax.set_title("usefulness: mean ± std over seeds, dots = seeds")
    fig.tight_layout()
    return figure_img_tag(fig, "usefulness")


def write_report(metrics: dict, path, generated, real, extents) -> None:
    names = list(metrics["labels"]["class_frequency_real"])
    palette = generated.class_map.palette
    gi, gm = generated.load_batch(np.arange(min(16, len(generated))))
    ri, rm = real.load_batch(real.indices("val", labeled_only=True)[:8])
    gen_grid = with_legend(
        upscale(grid([triplet(gi[i].permute(1, 2, 0).numpy(), gm[i].numpy(), palette) for i in range(len(gi))], 4), 2),
        names,
        palette,
    )
    real_grid = upscale(
        grid([triplet(ri[i].permute(1, 2, 0).numpy(), rm[i].numpy(), palette) for i in range(len(ri))], 4), 2
    )
    use = metrics["usefulness"]
    rz = metrics["realism"]
    inc = rz["inception"]
    realism_rows = []
    for label in ("held_out", "train"):
        z = rz[label]
        tag = "held-out (val)" if label == "held_out" else "segmenter's training"
        realism_rows += [
            [f"FD image, vs {tag} reals", z["fd_image"], z["fd_image_dims"], z["n_real"], rz["n_generated"]],
            [
                f"KID image, vs {tag} reals",
                f"{z['kid_image']:.4f} ± {z['kid_image_std']:.4f}",
                "all",
                z["n_real"],
                rz["n_generated"],
            ],
            [
                f"FD image+mask, vs {tag} reals",
                z["fd_image_mask"],
                z["fd_image_mask_dims"],
                z["n_real"],
                rz["n_generated"],
            ],
            [
                f"KID image+mask, vs {tag} reals",
                f"{z['kid_image_mask']:.4f} ± {z['kid_image_mask_std']:.4f}",
                "all",
                z["n_real"],
                rz["n_generated"],
            ],
        ]
    realism_rows.append(
        [
            "Inception FID (held-out reals)",
            inc.get("fid", inc.get("skipped")),
            2048,
            inc.get("n_real"),
            inc.get("n_generated"),
        ]
    )
    lb = metrics["labels"]
    label_rows = [
        ["JS divergence of class frequencies (bits)", lb["js_divergence_bits"], ""],
        ["classes per image", lb["classes_per_image"]["real"], lb["classes_per_image"]["generated"]],
        ["person area", lb["person_area"]["real"], lb["person_area"]["generated"]],
        ["person height", lb["person_height"]["real"], lb["person_height"]["generated"]],
    ]
    frag = [[n, lb["components_per_class"]["real"][n], lb["components_per_class"]["generated"][n]] for n in names]
    seg = metrics["segmenter"]
    test_use = usefulness_rows(use, "test")
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>styleseg evaluation</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}}
img{{max-width:100%}}</style></head><body>
<h1>styleseg evaluation</h1>
<p>checkpoint <code>{html.escape(metrics["checkpoint"])}</code> (kimg {metrics["kimg"]:.1f}), data
<code>{html.escape(metrics["data"])}</code>, {metrics["n"]} generated pairs ({seed_range(metrics)}),
ψ = {metrics["psi"]}; evaluate version {metrics["evaluate_version"]}, {metrics["seconds"]} s.</p>
<h2>1. Do the masks match the images?</h2>
<p>Agreement between each generated mask and the reference segmenter's prediction on the generated image
(n = {metrics["agreement"]["n"]}): <b>{
        html.escape(agreement_text(metrics["agreement"], len(names)))
    }</b>, pixel accuracy
{metrics["agreement"]["pixel_accuracy"]:.3f}{
        html.escape(f" ({note})" if (note := interval_note(metrics["agreement"])) else "")
    }. The same segmenter scores mIoU {seg["val"]["miou"]:.3f} on real
{html.escape(seg["val"]["split"])} data (n = {seg["val"]["n"]}): the ceiling of the agreement number. It trained
{seg["budget"].get("steps")} steps and kept the weights of step {seg["budget"].get("best_step")}
({seg["budget"].get("seconds")} s).</p>
{_table(*per_class_rows(metrics, names))}
{_confusion_paragraph(metrics["agreement"].get("excess_confusions"))}
<h2>2. Is the data useful?</h2>
<p>The same segmenter trained on each set with {metrics["options"]["seeds"]} seeds, scored on the report half of
real validation data; each regime is compared seed by seed with its real-only baseline (95 % Student-t interval of
the paired difference). Real + generated batches are {100 * metrics["options"]["mix"]:.0f} % generated.</p>
{_table(usefulness_rows(use), USEFULNESS_HEADER)}
{("<p>On the test split:</p>" + _table(test_use, USEFULNESS_HEADER)) if test_use else ""}
{_usefulness_plot(use)}
<h2>3. Are the images real?</h2>
<p>Distances in the reference segmenter's features; Fréchet distances in the leading principal components (as many
as a tenth of the smaller sample count), the mask as class fractions on a coarse grid.</p>
{_table(realism_rows, ["metric", "value", "dims", "n real", "n generated"])}
<h2>4. Label statistics</h2>{_table(label_rows, ["statistic", "real", "generated"])}
<p>Connected components per class where the class appears (fragmentation):</p>{
        _table(frag, ["class", "real", "generated"])
    }
{_plots(metrics, extents)}
<h2>Samples</h2><p>Generated (image | mask | overlay):</p>{_img(gen_grid, "generated samples")}
<p>Real validation samples:</p>{_img(real_grid, "real samples")}
</body></html>"""
    path.write_text(doc)
