"""Summarises bench/reproduce.sh's runs: OUT/results.json, OUT/results.md and OUT/grids/*.png.

    python3 bench/reproduce_report.py OUT STEPS SIZE

Per experiment: the test metrics in the paper's mode and in eval mode (pix2pix test's
summary.json), training stability over the last 20% of steps (spread of D's accuracy and of G's
GAN loss, from metrics.jsonl), val L1 per epoch, and output diversity (mean L1 between the outputs
for different inputs over the same for their targets: well below 1 is a sign of collapse).
"""
import glob
import itertools
import json
import os
import statistics
import sys

from PIL import Image
import numpy as np

GROUPS = [
    ("lambda", "lambda_L1 10 / 100 / 1000", ["lambda10", "main", "lambda1000"]),
    ("upsampling", "transposed vs resize-convolution", ["main", "resize_conv"]),
    ("lr_d", "lr_D = lr_G vs lr_G / 2", ["main", "lr_d_half"]),
    ("patch", "PatchGAN receptive field 1 / 16 / 70 / 286", ["patch1", "patch16", "main", "patch286"]),
    ("loss", "loss ablation: L1, cGAN, L1+GAN, L1+cGAN", ["l1_only", "cgan_only", "l1_gan", "main"]),
]
METRICS = ["l1", "psnr", "ssim", "sharpness", "checkerboard", "colour_error"]


def rows(run, kind):
    path = os.path.join(run, "metrics.jsonl")
    with open(path) as f:
        return [r for r in map(json.loads, f) if r.get("kind") == kind]


def stability(run):
    train = rows(run, "train")
    if not train:
        return {}
    last = max(r["step"] for r in train)
    tail = [r for r in train if r["step"] >= 0.8 * last] or train[-1:]
    acc = [(r["D_acc_real"] + r["D_acc_fake"]) / 2 for r in tail]
    gan = [r["G_GAN"] for r in tail]
    spread = lambda v: statistics.pstdev(v) if len(v) > 1 else 0.0
    return {"d_acc_mean": statistics.fmean(acc), "d_acc_std": spread(acc),
            "g_gan_mean": statistics.fmean(gan), "g_gan_std": spread(gan),
            "val_l1": [round(r["val_L1"], 4) for r in rows(run, "val")]}


def diversity(run, count=20):
    images = os.path.join(run, "results", "test_latest", "images")
    fakes = sorted(glob.glob(os.path.join(images, "*_fake_B.png")))[:count]
    if len(fakes) < 2:
        return None
    load = lambda p: np.asarray(Image.open(p).convert("RGB"), dtype=np.float64)
    fake = [load(p) for p in fakes]
    real = [load(p.replace("_fake_B", "_real_B")) for p in fakes]
    mean_pair = lambda xs: statistics.fmean(
        float(np.abs(a - b).mean()) for a, b in itertools.combinations(xs, 2))
    return mean_pair(fake) / mean_pair(real)


def grid(run, path, count=4, side=128):
    images = os.path.join(run, "results", "test_latest", "images")
    fakes = sorted(glob.glob(os.path.join(images, "*_fake_B.png")))[:count]
    if not fakes:
        return
    sheet = Image.new("RGB", (3 * side, len(fakes) * side), "white")
    for row, fake in enumerate(fakes):
        for col, kind in enumerate(["real_A", "fake_B", "real_B"]):
            tile = Image.open(fake.replace("fake_B", kind)).convert("RGB")
            sheet.paste(tile.resize((side, side), Image.NEAREST), (col * side, row * side))
    sheet.save(path)


OVERVIEW = ["lambda10", "main_seed0", "lambda1000", "resize_conv", "patch1", "l1_only", "cgan_only"]


def overview(out, count=3, side=96):
    """OUT/grids/overview.png: per test image, its input, the outputs of OVERVIEW's experiments
    (those that ran) and the target, side by side."""
    runs = [os.path.join(out, "runs", n) for n in OVERVIEW
            if os.path.isdir(os.path.join(out, "runs", n, "results", "test_latest"))]
    if not runs:
        return
    images = lambda run: sorted(glob.glob(os.path.join(
        run, "results", "test_latest", "images", "*_fake_B.png")))[:count]
    first = images(runs[0])
    sheet = Image.new("RGB", ((len(runs) + 2) * side, len(first) * side), "white")
    for row, fake in enumerate(first):
        name = os.path.basename(fake)
        columns = [fake.replace("fake_B", "real_A")]
        columns += [os.path.join(run, "results", "test_latest", "images", name) for run in runs]
        columns += [fake.replace("fake_B", "real_B")]
        for col, path in enumerate(columns):
            tile = Image.open(path).convert("RGB").resize((side, side), Image.NEAREST)
            sheet.paste(tile, (col * side, row * side))
    sheet.save(os.path.join(out, "grids", "overview.png"))


def experiment(out, run):
    name = os.path.basename(run)
    result = {"name": name}
    for mode in ["train-mode", "eval"]:
        summary = os.path.join(run, f"test_{mode}.json")
        if os.path.exists(summary):
            with open(summary) as f:
                result["paper" if mode == "train-mode" else "eval"] = json.load(f)["mean"]
    result.update(stability(run))
    result["diversity"] = diversity(run)
    grid(run, os.path.join(out, "grids", name + ".png"))
    return result


def spread_of(mains, metric):
    values = [m["paper"][metric] for m in mains if m.get("paper", {}).get(metric) is not None]
    return (min(values), max(values)) if len(values) > 1 else None


def fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(results, memory, steps, size):
    by_name = {r["name"]: r for r in results}
    mains = [r for r in results if r["name"].startswith("main_seed")]
    if mains:
        by_name["main"] = mains[0]
    lines = [f"Study: {steps} steps at {size}x{size}, batch 1, facades labels -> photos; "
             "metrics on the test split, paper mode (eval mode in results.json).", ""]
    if len(mains) > 1:
        lines.append(f"Run-to-run spread of the main setting over {len(mains)} seeds (min..max): " +
                     ", ".join(f"{m} {fmt(s[0])}..{fmt(s[1])}" for m in METRICS
                               if (s := spread_of(mains, m))))
        lines.append("")
    header = ("| experiment | L1 | PSNR | SSIM | sharpness | checkerboard | colour error | "
              "D acc (last 20%) | G GAN std | diversity | val L1 by epoch |")
    for _, title, names in GROUPS:
        present = [n for n in names if n in by_name]
        if not present:
            continue
        lines += [f"### {title}", "", header, "|" + "---|" * 11]
        for n in present:
            r = by_name[n]
            p = r.get("paper", {})
            label = f"{n} ({r['name']})" if n == "main" else n
            no_gan = not r.get("g_gan_mean")  # L1 only: no discriminator to judge
            lines.append(
                f"| {label} | {fmt(p.get('l1'), 4)} | {fmt(p.get('psnr'), 2)} | "
                f"{fmt(p.get('ssim'))} | {fmt(p.get('sharpness'))} | "
                f"{fmt(p.get('checkerboard'), 4)} | {fmt(p.get('colour_error'), 2)} | "
                + ("- | - | " if no_gan else
                   f"{fmt(r.get('d_acc_mean'), 2)} ± {fmt(r.get('d_acc_std'), 2)} | "
                   f"{fmt(r.get('g_gan_std'))} | ")
                + f"{fmt(r.get('diversity'))} | "
                f"{' '.join(map(str, r.get('val_l1', [])))} |")
        lines.append("")
    if memory:
        lines += ["### peak memory of a training step (256x256, batch 1)", "",
                  "| precision | U-Net depth | max RSS MiB |", "|---|---|---|"]
        for m in memory:
            rss = next((v for k, v in m.items() if "rss" in k.lower()), None)
            lines.append(f"| {m['study']['precision']} | {m['study']['depth']} | {fmt(rss, 0)} |")
        lines.append("")
    return "\n".join(lines)


def main():
    out, steps, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    runs = sorted(d for d in glob.glob(os.path.join(out, "runs", "*"))
                  if os.path.exists(os.path.join(d, "metrics.jsonl")))
    results = [experiment(out, run) for run in runs]
    memory = []
    memory_path = os.path.join(out, "memory.jsonl")
    if os.path.exists(memory_path):
        with open(memory_path) as f:
            memory = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"steps": steps, "size": size, "experiments": results, "memory": memory}, f,
                  indent=2)
    overview(out)
    text = markdown(results, memory, steps, size)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
