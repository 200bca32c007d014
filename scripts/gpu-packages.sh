#!/usr/bin/env bash
# Downloads (apt-get download, no install) the Debian packages that scripts/gpu-check.sh unpacks
# on a lent GPU machine, which reaches no package registry: the build's headers, CMake configs and
# the shared libraries they link, into gpu-debs/ (git-ignored; name it in the device tool's
# `carry`). Run here, on the Debian machine, before the GPU run.
#
#   scripts/gpu-packages.sh [DIR]     (default gpu-debs; prints the total size)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-gpu-debs}
mkdir -p "$dir"
# Headers and CMake/pkg-config files, then the libraries they link (the GPU machine's image may
# lack them). Left out: oneDNN, gloo and libonnx (built OFF there: pip's PyTorch has its own,
# with no headers), libtorch itself (the machine's PyTorch is used).
packages=(
  libcli11-dev nlohmann-json3-dev libfmt-dev libfmt9 libgtest-dev libgmock-dev
  libpng-dev libpng16-16 libjpeg62-turbo-dev libjpeg62-turbo libtiff-dev libtiff6 libtiffxx6
  zlib1g-dev libprotobuf-dev libprotobuf32 libprotoc32 protobuf-compiler
  libcpp-httplib-dev libarchive-dev libarchive13 libssl-dev libssl3
  libdeflate0 libjbig0 liblerc4 libwebp7 libzstd1 liblzma5 libbz2-1.0 liblz4-1 libnettle8
  libxml2 libicu72 libacl1
)
(cd "$dir" && apt-get download "${packages[@]}" > /dev/null)
du -sh "$dir"
ls "$dir" | wc -l | xargs echo "packages:"
