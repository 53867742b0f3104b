#!/bin/sh
# Builds verify-nostd/device — a bare-metal program that links
# belfry-verify-nostd — for two targets without an OS, which proves the
# verifier builds with no std, and prints the size of each release build.
# Installs what it needs when it is missing (idempotent): the Rust targets
# (rustup) and, for the ARM build of blst's C code, clang (Debian's apt).
#
#   x86_64-unknown-none     blst's C and assembly with the host's cc
#   thumbv7em-none-eabihf   Cortex-M4F/M7: blst's portable C with clang
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/device"

targets="x86_64-unknown-none thumbv7em-none-eabihf"
# The ARM build's code (.text + .rodata) must fit a 128 KiB-flash part with
# room to spare; it measured 47 KiB when this limit was set.
thumb_text_bytes_max=65536

installed=$(rustup target list --installed)
for t in $targets; do
  echo "$installed" | grep -qx "$t" || rustup target add "$t"
done
if ! command -v clang >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "verify-nostd: clang is needed to build blst for thumbv7em-none-eabihf (apt-get install clang)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang >/dev/null
fi

export CC_thumbv7em_none_eabihf=clang
if command -v llvm-ar >/dev/null 2>&1; then
  export AR_thumbv7em_none_eabihf=llvm-ar
fi
# blst's build script compiles its C at -O2; a device wants it small (a
# later -Os wins).
export CFLAGS_x86_64_unknown_none=-Os
export CFLAGS_thumbv7em_none_eabihf=-Os
# Without a named CPU, blst's build script enables the x86 extensions the
# *build* machine has (ADX): name the baseline so the program runs on any
# x86-64 and its size does not depend on CI's CPU.
export CARGO_TARGET_X86_64_UNKNOWN_NONE_RUSTFLAGS="-C target-cpu=x86-64"

target_dir="${CARGO_TARGET_DIR:-$here/../target}/verify-nostd-device"
for t in $targets; do
  cargo build --locked --release --target "$t" --target-dir "$target_dir"
  elf="$target_dir/$t/release/belfry-verify-device"
  echo "verify-nostd: $t release build (text = code and read-only data):"
  size "$elf"
done

text=$(size "$target_dir/thumbv7em-none-eabihf/release/belfry-verify-device" | awk 'NR == 2 { print $1 }')
if [ "$text" -gt "$thumb_text_bytes_max" ]; then
  echo "verify-nostd: the thumbv7em build's text is $text bytes, over $thumb_text_bytes_max" >&2
  exit 1
fi
