#!/usr/bin/env python3
"""Prints the state_dict layouts of networks built by the PyTorch reference script
(../shared/bench/reference_step.py) as one JSON object keyed by spec:
{"unet:8:batch": {"keys": [[name, [shape...]], ...], "params": N}, ...}.

Usage: dump_arch.py SHARED_DIR SPEC...   with SPEC = unet:NUM_DOWNS:NORM | patchgan:N_LAYERS:NORM
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(sys.argv[1], "bench"))
import reference_step as ref  # noqa: E402

out = {}
for spec in sys.argv[2:]:
    kind, depth, norm = spec.split(":")
    if kind == "unet":
        net = ref.UNet(num_downs=int(depth), norm=norm)
    elif kind == "patchgan":
        net = ref.PatchGAN(n_layers=int(depth), norm=norm)
    else:
        raise SystemExit("unknown kind " + kind)
    out[spec] = {
        "keys": [[k, list(v.shape)] for k, v in net.state_dict().items()],
        "params": sum(p.numel() for p in net.parameters()),
    }
print(json.dumps(out))
