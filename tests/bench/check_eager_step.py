#!/usr/bin/env python3
"""Checks that bench/eager_step.py computes what the shared PyTorch reference computes, bitwise.

    /usr/bin/python3 tests/bench/check_eager_step.py [REFERENCE_STEP_PY] [--script EAGER_STEP_PY]

REFERENCE_STEP_PY defaults to ../shared/bench/reference_step.py next to the repository root;
without it (or without torch, numpy and PIL) the check is skipped with exit code 77. Both
scripts run on CPU with one thread (--netG unet_128 --size 128 --seed 0 --steps 3):
  1. --save-state-dict: the same keys, in the same order, with bitwise-equal tensors;
  2. --trace: the same init_G.pth, init_D.pth and inputs.pt, and bitwise-equal final_G.pth,
     final_D.pth and equal losses.json, both from our own initialisation and from the
     reference's (--load init_G.pth --load-d init_D.pth); our JSON line has every key of the
     reference's;
  3. --image/--output with the trained weights (batch-norm running statistics included):
     byte-identical PNGs.
Exit status 0 when all agree, 1 with the first difference of each kind otherwise.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

SKIP = 77
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMON = ["--netG", "unet_128", "--size", "128", "--seed", "0", "--steps", "3",
          "--threads", "1"]


def skip(message):
    # CI sets PIX2PIX_REQUIRE_REFERENCE=1: there a missing reference fails instead of skipping.
    if os.environ.get("PIX2PIX_REQUIRE_REFERENCE") == "1":
        print(f"FAIL (PIX2PIX_REQUIRE_REFERENCE=1): {message}")
        sys.exit(1)
    print(f"SKIP: {message}")
    sys.exit(SKIP)


def run(script, extra, label):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [sys.executable, script] + COMMON + extra
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    print(f"  {label}: {time.perf_counter() - start:.1f} s")
    if proc.returncode != 0:
        raise SystemExit(f"FAIL: {label} exited with {proc.returncode}:\n  {' '.join(command)}\n"
                         f"{proc.stderr[-3000:]}")
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else None


class Checker:
    def __init__(self):
        self.failures = []

    def fail(self, message):
        print(f"  FAIL: {message}")
        self.failures.append(message)

    @staticmethod
    def tensors(ours, theirs):
        """Bitwise comparison of two tensors; returns a description of the difference or None."""
        if ours.dtype != theirs.dtype or ours.shape != theirs.shape:
            return f"{ours.dtype} {tuple(ours.shape)} vs {theirs.dtype} {tuple(theirs.shape)}"
        a, b = ours.detach().contiguous().numpy(), theirs.detach().contiguous().numpy()
        if a.tobytes() == b.tobytes():
            return None
        if ours.is_floating_point():
            diff = (ours.double() - theirs.double()).abs()
            return f"max |difference| {diff.max().item():.3g}, {int((diff != 0).sum())} differ"
        return f"{int((ours != theirs).sum())} elements differ"

    def state_dicts(self, what, our_path, their_path):
        import torch
        ours, theirs = torch.load(our_path), torch.load(their_path)
        if list(ours.keys()) != list(theirs.keys()):
            only_ours = [k for k in ours if k not in theirs][:5]
            only_theirs = [k for k in theirs if k not in ours][:5]
            self.fail(f"{what}: keys differ (only ours: {only_ours}, only the reference's: "
                      f"{only_theirs}, or a different order)")
            return
        for key in theirs:
            difference = self.tensors(ours[key], theirs[key])
            if difference:
                self.fail(f"{what}: {key}: {difference}")
                return
        print(f"  ok: {what} ({len(theirs)} tensors bitwise equal)")

    def inputs(self, what, our_path, their_path):
        import torch
        ours, theirs = torch.load(our_path), torch.load(their_path)
        for key in ("x", "y"):
            difference = self.tensors(ours[key], theirs[key])
            if difference:
                self.fail(f"{what}: {key}: {difference}")
                return
        print(f"  ok: {what}")

    def json_files(self, what, our_path, their_path):
        with open(our_path) as f:
            ours = json.load(f)
        with open(their_path) as f:
            theirs = json.load(f)
        if ours != theirs:
            self.fail(f"{what}: {ours} vs the reference's {theirs}")
        else:
            print(f"  ok: {what} {theirs}")

    def files(self, what, our_path, their_path):
        with open(our_path, "rb") as f:
            ours = f.read()
        with open(their_path, "rb") as f:
            theirs = f.read()
        if ours != theirs:
            self.fail(f"{what}: {our_path} and {their_path} differ")
        else:
            print(f"  ok: {what} (byte-identical, {len(theirs)} bytes)")


def write_test_image(path, size=128):
    import numpy as np
    from PIL import Image
    rng = np.random.RandomState(1)
    ramp = np.linspace(0, 255, size)
    img = np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, -ramp) / 2 + 127,
                    rng.randint(0, 256, (size, size))], axis=2)
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", nargs="?",
                   default=os.path.join(ROOT, "..", "shared", "bench", "reference_step.py"))
    p.add_argument("--script", default=os.path.join(ROOT, "bench", "eager_step.py"),
                   help="the script to check (default: bench/eager_step.py)")
    args = p.parse_args()
    reference = os.path.abspath(args.reference)
    if not os.path.isfile(reference):
        skip(f"no reference script at {reference}")
    try:
        import numpy  # noqa: F401
        import PIL  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        skip(f"{sys.executable} lacks {e.name} (Debian: apt-get install python3-torch "
             "python3-numpy python3-pil)")
    if not os.path.isfile(args.script):
        raise SystemExit(f"FAIL: no script at {args.script}")
    torch.set_num_threads(1)

    start = time.perf_counter()
    check = Checker()
    with tempfile.TemporaryDirectory(prefix="check_eager_step.") as tmp:
        def at(*parts):
            return os.path.join(tmp, *parts)

        print(f"reference: {reference}\nchecked:   {args.script}")
        ref_json = run(reference, ["--save-state-dict", at("ref_G.pth"), "--trace", at("ref")],
                       "reference --save-state-dict --trace")
        our_json = run(args.script, ["--save-state-dict", at("our_G.pth"), "--trace", at("our")],
                       "ours --save-state-dict --trace")
        run(args.script, ["--load", at("ref", "init_G.pth"), "--load-d", at("ref", "init_D.pth"),
                          "--trace", at("our_loaded")],
            "ours --load/--load-d the reference's init --trace")

        print("1. initialisation")
        check.state_dicts("--save-state-dict", at("our_G.pth"), at("ref_G.pth"))
        check.state_dicts("trace init_G.pth", at("our", "init_G.pth"), at("ref", "init_G.pth"))
        check.state_dicts("trace init_D.pth", at("our", "init_D.pth"), at("ref", "init_D.pth"))
        check.inputs("trace inputs.pt", at("our", "inputs.pt"), at("ref", "inputs.pt"))

        print("2. three training steps")
        for run_dir, start_from in (("our", "own init"), ("our_loaded", "reference's init")):
            for name in ("final_G.pth", "final_D.pth"):
                check.state_dicts(f"{name} from {start_from}", at(run_dir, name), at("ref", name))
            check.json_files(f"losses.json from {start_from}", at(run_dir, "losses.json"),
                             at("ref", "losses.json"))
        missing = sorted(set(ref_json or {}) - set(our_json or {}))
        if missing:
            check.fail(f"our JSON line lacks the reference's keys {missing}")
        else:
            print("  ok: our JSON line has every key of the reference's")

        print("3. --image with the trained weights")
        write_test_image(at("in.png"))
        weights = ["--load", at("ref", "final_G.pth"), "--image", at("in.png"), "--output"]
        run(reference, weights + [at("ref.png")], "reference --image")
        run(args.script, weights + [at("our.png")], "ours --image")
        check.files("translated PNG", at("our.png"), at("ref.png"))

    print(f"{time.perf_counter() - start:.1f} s")
    if check.failures:
        print(f"FAIL: {len(check.failures)} difference(s) between {args.script} and {reference}")
        return 1
    print(f"PASS: {args.script} agrees bitwise with {reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
