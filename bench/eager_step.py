#!/usr/bin/env python3
"""The pix2pix training step and inference in eager PyTorch, on CPU or CUDA: this project's own
baseline to compare speed and numbers against (it travels with the repository, ../shared does not).

What it runs is the reference PyTorch pix2pix (junyanz/pytorch-CycleGAN-and-pix2pix): a unet_256
or unet_128 generator (ngf 64, dropout 0.5 in the ngf*8 decoder levels next to the innermost) and
the 70x70 PatchGAN (n_layers 3, ndf 64), with the reference's module nesting, so state_dict keys
(model.model.1.model.3.weight ...) and parameter counts match (unet_256 + batch norm: G 54,413,955,
D 2,768,705); init normal(0, 0.02) as init_weights('normal'); one step is
fake = G(x); D update (BCE-with-logits on D(x, fake.detach()) then D(x, y), halved, Adam);
G update with D frozen (GAN loss + 100 * L1, Adam), Adam lr 2e-4, betas (0.5, 0.999).
Its command line is a drop-in for ../shared/bench/reference_step.py (same flags, file formats,
reseeding and JSON keys), plus GPU-speed flags that are all off by default.

Run it with:
    /usr/bin/python3 bench/eager_step.py --size 256 --steps 10            (Debian, torch 1.13 CPU)
    /opt/torch/.venv/bin/python bench/eager_step.py --device cuda --steps 20 --warmup 5
        [--precision bf16] [--channels-last] [--cudnn-benchmark] [--tf32] [--json-out R.json]
                                                                          (GPU machine, torch 2.x)
Prints one JSON line: median seconds per training step and per inference batch, the device,
precision and torch version, and on CUDA the GPU's name and peak allocated memory. On CUDA the
clock is read after torch.cuda.synchronize(); TF32 is off unless --tf32, so that fp32 numbers
compare with ours.
Checking another implementation against this one (tests/bench/check_eager_step.py checks that
these agree bitwise with reference_step.py on CPU):
  --save-state-dict G.pth   the initialised generator's state_dict (PyTorch zip format, OrderedDict)
  --save-io IO.pt           {'input', 'output'} of that generator in eval mode (on CPU, fp32)
  --image IN.png --output OUT.png --load G.pth
                            translate one image in eval mode (8-bit output, floor((y+1)/2*255)
                            as the reference writes images), with weights from G.pth
  --pair A.png B.png --load G.pth --load-d D.pth --trace DIR
                            train on one image pair (x from A, y from B, each decoded with PIL and
                            scaled to [-1, 1]) instead of random tensors, from the given weights
  --trace DIR               DIR/init_G.pth, init_D.pth, inputs.pt ({'x','y'}), then reseeds with
                            seed+1, runs --steps training steps (no warmup) and writes
                            DIR/final_G.pth, final_D.pth (CPU tensors) and losses.json.
"""
import argparse
import contextlib
import ctypes
import json
import os
import statistics
import time

import torch
import torch.nn as nn

NUM_DOWNS = {"unet_256": 8, "unet_128": 7}
INIT_GAIN = 0.02
LAMBDA_L1 = 100.0


# ---------------------------------------------------------------------------------------------
# Networks


def make_norm(kind, channels):
    """The normalisation layer for `kind`; 'none' keeps an Identity so that indices stay put."""
    layer = {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d}.get(kind)
    return nn.Identity() if layer is None else layer(channels)


class UnetLevel(nn.Module):
    """One level of the U-Net: `model` is down-sampling, the next level in, up-sampling.

    Every level but the outermost returns cat(input, model(input)). As in the reference, the
    down path starts with an in-place LeakyReLU, so the skip half carries LeakyReLU(input).
    """

    def __init__(self, role, outer_nc, inner_nc, in_nc=None, inner=None, norm="batch",
                 dropout=False):
        super().__init__()
        assert role in ("outermost", "middle", "innermost")
        self.concat = role != "outermost"
        conv_bias = norm == "instance"  # a batch norm after a convolution makes its bias redundant
        down_conv = nn.Conv2d(outer_nc if in_nc is None else in_nc, inner_nc, kernel_size=4,
                              stride=2, padding=1, bias=conv_bias)
        up_in = inner_nc if role == "innermost" else 2 * inner_nc
        up_conv = nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1,
                                     bias=conv_bias or role == "outermost")
        if role == "outermost":
            seq = [down_conv, inner, nn.ReLU(True), up_conv, nn.Tanh()]
        elif role == "innermost":
            seq = [nn.LeakyReLU(0.2, True), down_conv,
                   nn.ReLU(True), up_conv, make_norm(norm, outer_nc)]
        else:
            seq = [nn.LeakyReLU(0.2, True), down_conv, make_norm(norm, inner_nc), inner,
                   nn.ReLU(True), up_conv, make_norm(norm, outer_nc)]
            if dropout:
                seq.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        if not self.concat:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """The reference's UnetGenerator, built from the innermost level outwards."""

    def __init__(self, num_downs, in_nc=3, out_nc=3, ngf=64, norm="batch", dropout=True):
        super().__init__()
        level = UnetLevel("innermost", ngf * 8, ngf * 8, norm=norm)
        for _ in range(num_downs - 5):  # the extra ngf*8 levels, the only ones with dropout
            level = UnetLevel("middle", ngf * 8, ngf * 8, inner=level, norm=norm, dropout=dropout)
        for mult in (4, 2, 1):  # ngf*4 <- ngf*8, ngf*2 <- ngf*4, ngf <- ngf*2
            level = UnetLevel("middle", ngf * mult, ngf * mult * 2, inner=level, norm=norm)
        self.model = UnetLevel("outermost", out_nc, ngf, in_nc=in_nc, inner=level, norm=norm)

    def forward(self, x):
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """The reference's NLayerDiscriminator: with n_layers 3, a 70x70 PatchGAN on cat(x, y)."""

    def __init__(self, in_nc=6, ndf=64, n_layers=3, norm="batch"):
        super().__init__()
        conv_bias = norm == "instance"
        widths = [ndf * min(2 ** i, 8) for i in range(n_layers + 1)]
        seq = [nn.Conv2d(in_nc, widths[0], kernel_size=4, stride=2, padding=1),
               nn.LeakyReLU(0.2, True)]
        for i in range(1, n_layers + 1):
            stride = 1 if i == n_layers else 2
            seq.append(nn.Conv2d(widths[i - 1], widths[i], kernel_size=4, stride=stride,
                                 padding=1, bias=conv_bias))
            seq.append(make_norm(norm, widths[i]))
            seq.append(nn.LeakyReLU(0.2, True))
        seq.append(nn.Conv2d(widths[-1], 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


@torch.no_grad()
def init_normal(net, gain=INIT_GAIN):
    """init_weights(net, 'normal'): draws in module order, weight before bias."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.weight.normal_(0.0, gain)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.BatchNorm2d):
            module.weight.normal_(1.0, gain)
            module.bias.zero_()


def count_params(net):
    return sum(p.numel() for p in net.parameters())


# ---------------------------------------------------------------------------------------------
# Files


def cpu_state_dict(net):
    """net.state_dict() with contiguous CPU tensors (keeps the OrderedDict and its _metadata)."""
    state = net.state_dict()
    for key in state:
        state[key] = state[key].detach().to("cpu").contiguous()
    return state


def read_image(path):
    """An 8-bit image decoded with PIL, as a 1x3xHxW float tensor scaled to [-1, 1]."""
    import numpy as np
    from PIL import Image
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1.0


def write_image(y, path):
    """The first image of y (in [-1, 1]) as an 8-bit PNG: floor((y + 1) / 2 * 255)."""
    from PIL import Image
    chw = y[0].detach().float().to("cpu")
    hwc = ((chw + 1.0) / 2.0 * 255.0).to(torch.uint8).permute(1, 2, 0).contiguous()
    Image.fromarray(hwc.numpy()).save(path)


# ---------------------------------------------------------------------------------------------
# Settings


def tune_malloc():
    """Keep freed buffers in glibc's heap rather than mmapping and returning them every step."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 30)
    return True


def set_cuda_flags(args):
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32


def autocast_factory(device, precision):
    """A function giving the context the forward passes and losses run in."""
    if precision == "fp32":
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256, help="side of the random input tensors")
    p.add_argument("--netG", default="unet_256", choices=list(NUM_DOWNS))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=10, help="timed training steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps before them")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="intra-op threads (default: all cores; Debian's torch would otherwise "
                        "use 1)")
    p.add_argument("--norm", default="batch", choices=["batch", "instance", "none"])
    p.add_argument("--default-malloc", action="store_true",
                   help="leave glibc malloc as it is (slower on CPU: large buffers are mmapped "
                        "and freed every step)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--save-state-dict", metavar="PATH",
                   help="write the initialised generator's state_dict")
    p.add_argument("--save-io", metavar="PATH",
                   help="write {'input','output'} of the generator in eval mode")
    p.add_argument("--load", metavar="PATH",
                   help="load generator weights (state_dict) before anything else")
    p.add_argument("--load-d", metavar="PATH", help="load discriminator weights (state_dict)")
    p.add_argument("--pair", nargs=2, metavar=("A", "B"),
                   help="train on this image pair instead of random tensors")
    p.add_argument("--image", metavar="PATH", help="translate this image (eval mode) and exit")
    p.add_argument("--output", metavar="PATH", help="where --image writes its result (PNG)")
    p.add_argument("--trace", metavar="DIR",
                   help="write weights before/after --steps training steps")
    speed = p.add_argument_group("GPU speed (not in reference_step.py; all off by default)")
    speed.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                       help="bf16: torch.autocast(device, bfloat16) around the forward passes "
                            "and losses (weights, gradients and Adam stay fp32)")
    speed.add_argument("--channels-last", action="store_true",
                       help="models and inputs in torch.channels_last")
    speed.add_argument("--cudnn-benchmark", action="store_true",
                       help="torch.backends.cudnn.benchmark = True")
    speed.add_argument("--tf32", action="store_true",
                       help="allow TF32 in matmuls and cuDNN convolutions (default on CUDA: off)")
    speed.add_argument("--json-out", metavar="PATH", help="also write the JSON line to PATH")
    args = p.parse_args(argv)
    if args.image and not args.output:
        p.error("--image needs --output")
    if args.steps < 1:
        p.error("--steps must be at least 1")
    return args


# ---------------------------------------------------------------------------------------------
# Training and inference


class Pix2PixStep:
    """One pix2pix optimisation step, in the reference's op order."""

    def __init__(self, g, d, autocast):
        self.g, self.d, self.autocast = g, d, autocast
        self.opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.gan_loss = nn.BCEWithLogitsLoss()

    def _set_d_trainable(self, flag):
        for param in self.d.parameters():
            param.requires_grad_(flag)

    def __call__(self, x, y):
        with self.autocast():
            fake = self.g(x)
        # D: fake pair (G's output detached) first, then the real pair.
        self.opt_d.zero_grad()
        with self.autocast():
            logits_fake = self.d(torch.cat([x, fake.detach()], 1))
            logits_real = self.d(torch.cat([x, y], 1))
            loss_d_fake = self.gan_loss(logits_fake, torch.zeros_like(logits_fake))
            loss_d_real = self.gan_loss(logits_real, torch.ones_like(logits_real))
            loss_d = 0.5 * (loss_d_fake + loss_d_real)
        loss_d.backward()
        self.opt_d.step()
        # G: fool the frozen D and stay close to y.
        self._set_d_trainable(False)
        self.opt_g.zero_grad()
        with self.autocast():
            logits = self.d(torch.cat([x, fake], 1))
            loss_g_gan = self.gan_loss(logits, torch.ones_like(logits))
            loss_g = loss_g_gan + LAMBDA_L1 * (fake - y).abs().mean()
        loss_g.backward()
        self.opt_g.step()
        self._set_d_trainable(True)
        return float(loss_g), float(loss_d)


def timed(fn, sync):
    """Seconds fn() takes, with the device idle at both clock readings."""
    sync()
    start = time.perf_counter()
    result = fn()
    sync()
    return time.perf_counter() - start, result


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    if on_cuda and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: this torch ({torch.__version__}) sees no CUDA")
    tuned_malloc = not args.default_malloc and tune_malloc()
    if args.threads:
        torch.set_num_threads(args.threads)
    if on_cuda:
        set_cuda_flags(args)
    autocast = autocast_factory(device, args.precision)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format

    # Random numbers are drawn as in the reference: build G, build D, init G, init D, x, y.
    torch.manual_seed(args.seed)
    g = UnetGenerator(NUM_DOWNS[args.netG], norm=args.norm)
    d = PatchDiscriminator(norm=args.norm)
    init_normal(g)
    init_normal(d)
    params_g, params_d = count_params(g), count_params(d)
    if args.load:
        g.load_state_dict(torch.load(args.load, map_location="cpu"))
    if args.load_d:
        d.load_state_dict(torch.load(args.load_d, map_location="cpu"))

    def to_device(t):
        return t.to(device).contiguous(memory_format=memory_format)

    if args.image:
        g = g.to(device, memory_format=memory_format).eval()
        with torch.no_grad(), autocast():
            write_image(g(to_device(read_image(args.image))), args.output)
        return

    shape = (args.batch, 3, args.size, args.size)
    x = torch.rand(shape) * 2 - 1
    y = torch.rand(shape) * 2 - 1
    if args.pair:
        x, y = read_image(args.pair[0]), read_image(args.pair[1])
    if args.save_state_dict:
        torch.save(g.state_dict(), args.save_state_dict)
    if args.save_io:
        g.eval()
        with torch.no_grad():
            torch.save({"input": x, "output": g(x)}, args.save_io)
        g.train()
    if args.trace:
        os.makedirs(args.trace, exist_ok=True)
        torch.save(g.state_dict(), os.path.join(args.trace, "init_G.pth"))
        torch.save(d.state_dict(), os.path.join(args.trace, "init_D.pth"))
        torch.save({"x": x, "y": y}, os.path.join(args.trace, "inputs.pt"))
        torch.manual_seed(args.seed + 1)
        args.warmup = 0

    g = g.to(device, memory_format=memory_format)
    d = d.to(device, memory_format=memory_format)
    x, y = to_device(x), to_device(y)
    sync = (lambda: torch.cuda.synchronize(device)) if on_cuda else (lambda: None)

    step = Pix2PixStep(g, d, autocast)
    for _ in range(args.warmup):
        step(x, y)
    train_times = []
    for _ in range(args.steps):
        seconds, (loss_g, loss_d) = timed(lambda: step(x, y), sync)
        train_times.append(seconds)

    if args.trace:
        torch.save(cpu_state_dict(g), os.path.join(args.trace, "final_G.pth"))
        torch.save(cpu_state_dict(d), os.path.join(args.trace, "final_D.pth"))
        with open(os.path.join(args.trace, "losses.json"), "w") as f:
            json.dump({"loss_G": loss_g, "loss_D": loss_d, "steps": args.steps,
                       "seed": args.seed}, f)

    g.eval()
    infer_times = []
    with torch.no_grad(), autocast():
        for _ in range(max(3, args.steps)):
            infer_times.append(timed(lambda: g(x), sync)[0])

    result = {
        "impl": "pytorch-eager", "torch": torch.__version__, "device": args.device,
        "threads": torch.get_num_threads(), "netG": args.netG, "size": args.size,
        "batch": args.batch, "norm": args.norm, "params_G": params_g, "params_D": params_d,
        "train_step_s_median": statistics.median(train_times), "train_step_s_min": min(train_times),
        "infer_s_per_batch_median": statistics.median(infer_times),
        "loss_G": loss_g, "loss_D": loss_d, "tuned_malloc": tuned_malloc,
        "precision": args.precision, "channels_last": args.channels_last,
    }
    if on_cuda:
        result.update({
            "gpu": torch.cuda.get_device_name(device),
            "peak_memory_bytes": torch.cuda.max_memory_allocated(device),
            "cudnn_benchmark": args.cudnn_benchmark, "tf32": args.tf32,
        })
    line = json.dumps(result)
    print(line)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
