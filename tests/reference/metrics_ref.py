#!/usr/bin/env python3
"""Reference values for the metrics tests (tests/eval/test_metrics.cpp), from scikit-image, numpy and
scipy (Debian's python3-skimage, python3-numpy, python3-scipy).

  metrics_ref.py images REAL FAKE [REAL FAKE ...]
      per pair, as JSON: {"psnr": peak_signal_noise_ratio(data_range=255), "ssim":
      structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
      data_range=255, channel_axis=-1 for colour images), "l1": mean |a - b| / 127.5}.
  metrics_ref.py features FEATURES.pt
      FEATURES.pt holds "x" (N x D) and "y" (M x D). Prints {"fid": pytorch-fid's formula with
      numpy.cov and scipy.linalg.sqrtm, "mmd2": the unbiased MMD^2 with the kernel
      (x.y / D + 1)^3 on the full sets, "mu_x", "trace_cov_x": checks on the statistics}.
"""
import json
import sys

import numpy as np
import scipy.linalg
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def images(paths):
    out = []
    for real_path, fake_path in zip(paths[0::2], paths[1::2]):
        a = np.asarray(Image.open(real_path))
        b = np.asarray(Image.open(fake_path))
        colour = a.ndim == 3
        ssim = structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=255,
                                     channel_axis=-1 if colour else None)
        psnr = peak_signal_noise_ratio(a, b, data_range=255)
        l1 = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean() / 127.5)
        out.append({"psnr": float(psnr), "ssim": float(ssim), "l1": l1})
    print(json.dumps(out))


def frechet(x, y):
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((s1 + offset).dot(s2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)), s1


def mmd2(x, y):
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    n, m = x.shape[0], y.shape[0]
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) +
                 (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


def features(path):
    data = torch.load(path)
    x = data["x"].double().numpy()
    y = data["y"].double().numpy()
    fid, s1 = frechet(x, y)
    print(json.dumps({"fid": fid, "mmd2": mmd2(x, y), "mu_x": x.mean(0).tolist(),
                      "trace_cov_x": float(np.trace(s1))}))


if __name__ == "__main__":
    if sys.argv[1] == "images":
        images(sys.argv[2:])
    elif sys.argv[1] == "features":
        features(sys.argv[2])
    else:
        raise SystemExit("unknown mode " + sys.argv[1])
