#!/usr/bin/env python3
"""Reference-side helpers for the weight-interchange tests, built on the PyTorch reference
networks in ../shared/bench/reference_step.py.

  ref_weights.py SHARED save OUT.pth SEED [legacy]
      a unet_256 (batch norm) generator with weights that keep activations in range (Kaiming
      normal) and non-trivial running statistics, saved as Python's torch.save(state_dict) in the
      zip format, or the pre-1.6 legacy format with `legacy`.
  ref_weights.py SHARED check-init G.pth D.pth SEED NUM_DOWNS NORM
      loads our files strictly into the reference networks and compares them with the reference's
      own initialisation for SEED (seed, build G, build D, init G, init D); prints JSON.
  ref_weights.py SHARED forward G.pth IN.pt OUT.pt
      eval-mode output of the reference unet_256 with weights G.pth on the tensor in IN.pt.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(sys.argv[1], "bench"))
import reference_step as ref  # noqa: E402

mode = sys.argv[2]
if mode == "save":
    out, seed = sys.argv[3], int(sys.argv[4])
    torch.manual_seed(seed)
    g = ref.UNet(num_downs=8, norm="batch")
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                torch.nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    m.bias.uniform_(-0.1, 0.1)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
    legacy = len(sys.argv) > 5 and sys.argv[5] == "legacy"
    torch.save(g.state_dict(), out, _use_new_zipfile_serialization=not legacy)
elif mode == "check-init":
    g_path, d_path, seed, num_downs, norm = sys.argv[3:8]
    torch.manual_seed(int(seed))
    g = ref.UNet(num_downs=int(num_downs), norm=norm)
    d = ref.PatchGAN(norm=norm)
    ref.init_weights(g)
    ref.init_weights(d)
    ours_g, ours_d = ref.UNet(num_downs=int(num_downs), norm=norm), ref.PatchGAN(norm=norm)
    ours_g.load_state_dict(torch.load(g_path), strict=True)
    ours_d.load_state_dict(torch.load(d_path), strict=True)

    def max_diff(a, b):
        return max(float((x.double() - y.double()).abs().max()) for x, y in
                   zip(a.state_dict().values(), b.state_dict().values()))

    print(json.dumps({"strict_load": True,
                      "G_equal": all(torch.equal(x, y) for x, y in zip(g.state_dict().values(), ours_g.state_dict().values())),
                      "D_equal": all(torch.equal(x, y) for x, y in zip(d.state_dict().values(), ours_d.state_dict().values())),
                      "G_max_diff": max_diff(g, ours_g), "D_max_diff": max_diff(d, ours_d)}))
elif mode == "forward":
    g_path, in_path, out_path = sys.argv[3:6]
    g = ref.UNet(num_downs=8, norm="batch")
    g.load_state_dict(torch.load(g_path), strict=True)
    g.eval()
    with torch.no_grad():
        torch.save({"output": g(torch.load(in_path)["input"])}, out_path)
else:
    raise SystemExit("unknown mode " + mode)
