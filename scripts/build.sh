#!/bin/bash
# scripts/build.sh DIR: configure (once) and build the lean x86_64 QEMU in
# DIR/build.  Incremental: ninja only rebuilds what changed.
set -euo pipefail

DIR=${1:?usage: build.sh DIR}
JOBS=${JOBS:-$(nproc)}
# QGA_FLAVOUR: "" (the lean build), "sanitizers" (ASan + UBSan, in
# DIR/build-san), "fuzz" (clang, libFuzzer, ASan + UBSan, in DIR/build-fuzz)
# "fuzz-fast" (LeakSanitizer instead of ASan and UBSan: about 4 times the
# executions per second, for long campaigns; DIR/build-fuzz-fast) or
# "disabled" (--disable-qga-passthrough, in DIR/build-noqga),
# QGA_BUILD_DIR: another build directory of the same tree (check-mutants),
# QGA_NINJA_TARGETS: build only these
FLAVOUR=${QGA_FLAVOUR:-}
case "$FLAVOUR" in
    "") B=${QGA_BUILD_DIR:-$DIR/build} ;;
    sanitizers) B=${QGA_BUILD_DIR:-$DIR/build-san} ;;
    fuzz) B=${QGA_BUILD_DIR:-$DIR/build-fuzz} ;;
    fuzz-fast) B=${QGA_BUILD_DIR:-$DIR/build-fuzz-fast} ;;
    disabled) B=${QGA_BUILD_DIR:-$DIR/build-noqga} ;;
    *) echo "build.sh: unknown QGA_FLAVOUR '$FLAVOUR'" >&2; exit 1 ;;
esac

# ccache: QEMU's configure names the compiler ('cc') in meson's cross file,
# so meson does not add ccache by itself; put ccache's masquerade directory
# first on PATH when configuring, and meson records /usr/lib/ccache/cc.
# NOHASHDIR + BASEDIR give hits across checkouts in different directories.
[ -x /usr/lib/ccache/cc ] && export PATH=/usr/lib/ccache:$PATH
export CCACHE_NOHASHDIR=1
export CCACHE_DIR=${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/qga-passthrough/ccache}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
# sloppiness needed for hits across different checkout paths and __DATE__/__TIME__
export CCACHE_BASEDIR=$(cd "$DIR" && pwd)
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-time_macros,include_file_mtime,include_file_ctime}

FIRMWARE_DIRS=(/usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu)
CONFIGURE_ARGS=(
    --python=/usr/bin/python3
    --disable-download --disable-install-blobs
    "--firmwarepath=$(IFS=:; echo "${FIRMWARE_DIRS[*]}")"
    --target-list=x86_64-softmmu
    --without-default-features
    --enable-guest-agent --enable-slirp --enable-pixman --enable-fdt=system
)
case "$FLAVOUR" in
    "") CONFIGURE_ARGS+=(--enable-docs) ;;
    sanitizers) CONFIGURE_ARGS+=(--enable-asan --enable-ubsan) ;;
    disabled) CONFIGURE_ARGS+=(--disable-qga-passthrough) ;;
    # the guest agent is not needed: the fuzz target is all that is built
    fuzz|fuzz-fast) args=()
          for a in "${CONFIGURE_ARGS[@]}"; do
              [ "$a" = --enable-guest-agent ] || args+=("$a")
          done
          CONFIGURE_ARGS=("${args[@]}"
                          --cc=clang --cxx=clang++ --enable-fuzzing)
          # fuzz-fast: long campaigns, LeakSanitizer instead of ASan
          if [ "$FLAVOUR" = fuzz ]; then
              CONFIGURE_ARGS+=(--enable-asan --enable-ubsan)
          else
              CONFIGURE_ARGS+=(--extra-cflags=-fsanitize=leak
                               --extra-ldflags=-fsanitize=leak)
          fi ;;
esac
# qga_passthrough is a feature, which --without-default-features turns
# off: enable it, except in the "disabled" flavour and in trees from
# before the series' meson patch (build-each), which lack the option
if [ "$FLAVOUR" != disabled ] &&
   grep -q "^option('qga_passthrough'" "$DIR/meson_options.txt"; then
    CONFIGURE_ARGS+=(--enable-qga-passthrough)
fi

stamp=$B/.qga-configure-args
if [ ! -f "$B/build.ninja" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${CONFIGURE_ARGS[*]}" ]; then
    rm -rf "$B"
    mkdir -p "$B"
    (cd "$B" && ../configure "${CONFIGURE_ARGS[@]}")
    echo "${CONFIGURE_ARGS[*]}" > "$stamp"
fi
# shellcheck disable=SC2086
ninja -C "$B" -j "$JOBS" ${QGA_NINJA_TARGETS:-}

# A QEMU run from its build directory looks for firmware under qemu-bundle/
# (util/cutils.c:get_relocated_path); point those paths at Debian's firmware.
for d in "${FIRMWARE_DIRS[@]}"; do
    if [ -d "$d" ] && [ ! -e "$B/qemu-bundle$d" ]; then
        mkdir -p "$(dirname "$B/qemu-bundle$d")"
        ln -sfn "$d" "$B/qemu-bundle$d"
    fi
done
