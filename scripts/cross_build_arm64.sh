#!/usr/bin/env bash
# Cross-builds the pix2pix library and the pix2pix CLI for arm64 (aarch64) with Debian's cross
# compiler (g++-aarch64-linux-gnu), to check that the project builds there. Not part of CI: it is
# slow (a few hundred MiB of arm64 packages, then a full -j1 build) and changes the host's apt
# setup (adds the arm64 architecture).
#
# libtorch-dev has no Multi-Arch field, so libtorch-dev:arm64 cannot be installed beside the amd64
# one: instead the arm64 .deb files are fetched with `apt-get download` and unpacked with
# `dpkg -x` into a sysroot, build-arm64/sysroot (gitignored with build-*/):
#   - the runtime libraries: the dependency closure that apt resolves for an empty arm64 system
#     installing libtorch1.13, libdnnl2, libprotobuf32, ... (simulated with `apt-get -s` against
#     an empty dpkg status, so one alternative is picked where Depends offers several);
#   - the -dev packages themselves (headers, .so links, CMake package files), without their deps;
#   - the header-only packages (CLI11, nlohmann-json, OpenCL headers: Architecture all).
# The C library and libstdc++/libgomp come from the cross toolchain (/usr/aarch64-linux-gnu and
# /usr/lib/gcc-cross), protoc is the host's /usr/bin/protoc. It then writes a CMake toolchain
# file (build-arm64/toolchain.cmake), configures build-arm64/build without tests and benchmarks,
# builds the `pix2pix` and `pix2pix_cli` targets with -j1, runs `file` on the executable and, when
# qemu-aarch64 is installed, runs it under qemu as a smoke test.
#
# Idempotent: packages already downloaded or unpacked are skipped; re-running rebuilds only what
# changed. Usage: scripts/cross_build_arm64.sh   (as root, or with sudo available)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/build-arm64"
SYSROOT="$OUT/sysroot"
DEBS="$OUT/debs"
BUILD="$OUT/build"
TOOLCHAIN="$OUT/toolchain.cmake"
TRIPLE=aarch64-linux-gnu
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Runtime libraries whose dependency closure the link (and qemu) needs.
RUNTIME_ROOTS=(
  libc6 libstdc++6 libgcc-s1 libgomp1
  libtorch1.13 libdnnl2 libgloo0 libprotobuf32 libfmt9 libgflags2.2 libgoogle-glog0v6 libunwind8
  libjpeg62-turbo libpng16-16 libtiff6 zlib1g ocl-icd-libopencl1
)
# arm64 development packages, unpacked without their dependencies. libgflags-dev,
# libgoogle-glog-dev (and its FindUnwind: libunwind-dev) are required by Caffe2Config.cmake;
# ocl-icd-opencl-dev by dnnl-config.cmake (its targets link OpenCL::OpenCL).
DEV_PACKAGES=(
  libtorch-dev libdnnl-dev libgloo-dev libprotobuf-dev libfmt-dev
  libjpeg62-turbo-dev libpng-dev libtiff-dev zlib1g-dev
  libgflags-dev libgoogle-glog-dev libunwind-dev ocl-icd-opencl-dev
)
# Architecture: all (header-only): same files as on the host, unpacked into the sysroot so that no
# -I/usr/include (which holds the amd64 libtorch headers) is ever needed.
ALL_PACKAGES=(libcli11-dev nlohmann-json3-dev opencl-c-headers opencl-clhpp-headers)

log() { printf '\n== %s\n' "$*"; }

# --- 1. Host tools -------------------------------------------------------------------------------
log "host packages"
HOST_PACKAGES=(g++-aarch64-linux-gnu binutils-aarch64-linux-gnu cmake make file protobuf-compiler)
missing=()
for p in "${HOST_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
updated=0
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  $SUDO apt-get update -q
  updated=1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- 2. arm64 package lists ----------------------------------------------------------------------
log "arm64 architecture"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
  updated=0
fi
if ! apt-cache show libtorch-dev:arm64 >/dev/null 2>&1; then
  [ "$updated" = 1 ] || $SUDO apt-get update -q
fi
apt-cache show libtorch-dev:arm64 >/dev/null  # fails loudly if the arm64 lists are unavailable

# --- 3. Resolve and download ---------------------------------------------------------------------
mkdir -p "$DEBS" "$SYSROOT"
log "resolving the arm64 runtime closure"
# An empty dpkg status makes apt resolve as for a fresh arm64 system; -s only simulates.
: >"$OUT/empty-dpkg-status"
apt-get -s -q -o Dir::State::status="$OUT/empty-dpkg-status" \
  -o APT::Architecture=arm64 -o APT::Architectures::=arm64 \
  -o APT::Install-Recommends=false -o APT::Install-Suggests=false \
  install "${RUNTIME_ROOTS[@]}" >"$OUT/resolve.log"
# "Inst NAME (VERSION ARCHIVE [ARCH])": keep the arm64 packages (the [all] ones are data, docs,
# debconf and the like, never needed to link or run).
{
  awk '/^Inst / && /\[arm64\]\)/ {v=$3; sub(/^\(/, "", v); print $2 ":arm64=" v}' \
    "$OUT/resolve.log"
  for p in "${DEV_PACKAGES[@]}"; do
    printf '%s:arm64=%s\n' "$p" "$(apt-cache policy "$p:arm64" | awk '/Candidate:/ {print $2}')"
  done
  for p in "${ALL_PACKAGES[@]}"; do
    printf '%s=%s\n' "$p" "$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')"
  done
} | sort -u >"$OUT/packages.txt"
echo "$(wc -l <"$OUT/packages.txt") packages (list: $OUT/packages.txt)"

# The file apt-get download writes: NAME_VERSION_ARCH.deb, the epoch's ':' written as %3a.
deb_file() {  # $1 = NAME[:arm64]=VERSION
  local spec="$1" name ver arch=arm64
  name="${spec%%=*}"
  ver="${spec#*=}"
  case "$name" in
    *:arm64) name="${name%:arm64}" ;;
    *) arch=all ;;
  esac
  printf '%s/%s_%s_%s.deb' "$DEBS" "$name" "${ver//:/%3a}" "$arch"
}
to_fetch=()
while read -r spec; do
  case "$spec" in *=) echo "no candidate for ${spec%=}" >&2; exit 1 ;; esac
  [ -f "$(deb_file "$spec")" ] || to_fetch+=("$spec")
done <"$OUT/packages.txt"
if [ ${#to_fetch[@]} -gt 0 ]; then
  log "downloading ${#to_fetch[@]} packages into $DEBS"
  # apt-get download works as the _apt user when it can: let it write there.
  (cd "$DEBS" && apt-get download -q "${to_fetch[@]}")
else
  log "all packages already downloaded"
fi

# --- 4. Unpack into the sysroot ------------------------------------------------------------------
log "unpacking into $SYSROOT"
mkdir -p "$SYSROOT/.unpacked"
n=0
while read -r spec; do
  deb="$(deb_file "$spec")"
  stamp="$SYSROOT/.unpacked/$(basename "$deb")"
  if [ ! -f "$stamp" ]; then
    dpkg -x "$deb" "$SYSROOT"
    touch "$stamp"
    n=$((n + 1))
  fi
done <"$OUT/packages.txt"
echo "unpacked $n new packages"
# Absolute symbolic links (e.g. usr/lib/aarch64-linux-gnu/libfoo.so -> /lib/aarch64-linux-gnu/...)
# would point into the host: make them relative to their place in the sysroot.
while IFS= read -r -d '' link; do
  target="$(readlink "$link")"
  case "$target" in
    /*) ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$SYSROOT$target")" "$link" ;;
  esac
done < <(find "$SYSROOT" -type l -print0)

# --- 5. Toolchain file ---------------------------------------------------------------------------
log "writing $TOOLCHAIN"
LIBDIRS="$SYSROOT/lib/$TRIPLE:$SYSROOT/usr/lib/$TRIPLE"
# Libraries that only other libraries need (libtorch_cpu's libopencv_*, libav*, ...) are looked up
# by the linker through -rpath-link; BLAS/LAPACK sit in their alternatives' folders.
for d in "$SYSROOT"/usr/lib/"$TRIPLE"/{blas,lapack,openblas-pthread,openblas-openmp,atlas}; do
  [ -d "$d" ] && LIBDIRS="$LIBDIRS:$d"
done
cat >"$TOOLCHAIN" <<EOF
# Generated by scripts/cross_build_arm64.sh: arm64 (aarch64) cross build against $SYSROOT.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER /usr/bin/$TRIPLE-gcc)
set(CMAKE_CXX_COMPILER /usr/bin/$TRIPLE-g++)
set(CMAKE_LIBRARY_ARCHITECTURE $TRIPLE)
# The cross compiler keeps its own libc and libstdc++ (/usr/$TRIPLE) and, with --sysroot, also
# searches $SYSROOT/usr/include[/$TRIPLE] and $SYSROOT/{,usr/}lib/$TRIPLE.
set(CMAKE_SYSROOT "$SYSROOT")
set(CMAKE_FIND_ROOT_PATH "$SYSROOT")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# protoc runs on the build machine: the host's (same protobuf 3.21 as the arm64 headers).
set(Protobuf_PROTOC_EXECUTABLE /usr/bin/protoc CACHE FILEPATH "host protoc")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-Wl,-rpath-link,$LIBDIRS")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-Wl,-rpath-link,$LIBDIRS")
EOF

# --- 6. Configure and build ----------------------------------------------------------------------
log "configure"
cmake -S "$ROOT" -B "$BUILD" -G "Unix Makefiles" -DCMAKE_TOOLCHAIN_FILE="$TOOLCHAIN" \
  -DPIX2PIX_BUILD_TESTS=OFF -DPIX2PIX_BUILD_BENCH=OFF
# -k (make's keep-going): one run lists every file that fails to compile, not only the first.
start=$(date +%s)
status=0
log "build: pix2pix (-j1 -k)"
cmake --build "$BUILD" --target pix2pix -j1 -- -k 2>&1 | tee "$OUT/build.log" || status=$?
if [ "$status" -eq 0 ]; then
  log "build: pix2pix_cli (-j1 -k)"
  cmake --build "$BUILD" --target pix2pix_cli -j1 -- -k 2>&1 | tee -a "$OUT/build.log" ||
    status=$?
else
  # The CLI's sources wait for the library: compile them anyway (the Makefile generator's
  # TARGET/fast has no dependencies; its link then fails for want of libpix2pix.a) so that
  # their errors are listed too.
  log "library failed: compiling the CLI's sources on their own (pix2pix_cli/fast)"
  cmake --build "$BUILD" --target pix2pix_cli/fast -j1 -- -k 2>&1 | tee -a "$OUT/build.log" || true
fi
echo "build took $(($(date +%s) - start)) s (exit status $status)"
if [ "$status" -ne 0 ]; then
  log "errors (full log: $OUT/build.log)"
  grep -E ': (fatal )?error: |undefined reference|cannot find -l' "$OUT/build.log" | sort -u || true
fi
[ "$status" -eq 0 ] || exit "$status"

log "result"
# The archive's members: "file format elf64-littleaarch64" for each.
"$TRIPLE-objdump" -a "$BUILD/libpix2pix.a" | grep 'file format' | sed 's/^.*: *//' | sort | uniq -c
file "$BUILD/pix2pix"

# --- 7. Optional smoke test under qemu -----------------------------------------------------------
if command -v qemu-aarch64 >/dev/null 2>&1; then
  log "smoke test: qemu-aarch64 -L $SYSROOT $BUILD/pix2pix --help"
  # -E: LD_LIBRARY_PATH for the guest's ld.so only (BLAS/LAPACK alternatives' folders).
  QEMU=(qemu-aarch64 -L "$SYSROOT" -E LD_LIBRARY_PATH="$LIBDIRS")
  "${QEMU[@]}" "$BUILD/pix2pix" --help >"$OUT/smoke-help.txt"
  head -n 30 "$OUT/smoke-help.txt"
  log "smoke test: pix2pix model --netG unet_256"
  "${QEMU[@]}" "$BUILD/pix2pix" --threads 1 model --netG unet_256 >"$OUT/smoke-model.txt"
  tail -n 15 "$OUT/smoke-model.txt"
else
  echo "qemu-aarch64 not installed (apt-get install qemu-user): no smoke test"
fi
