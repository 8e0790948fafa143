#!/usr/bin/env bash
# One-time set-up on a fresh Debian/Ubuntu machine: system libraries (when run as root) and the
# project's virtual environment in .venv.  Safe to rerun: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

APT_PACKAGES=(libportaudio2 libsndfile1 libfluidsynth3 alsa-utils libasound2-plugins mediainfo dpf-source g++ make
  libegl1 libgl1 libfontconfig1 libdbus-1-3 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0
  libxcb-image0 libxcb-render-util0 libxcb-xkb1 libxcb-shape0 libxcb-randr0 xvfb xdotool imagemagick)
if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "setup: installing system packages: ${missing[*]}"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "setup: please install these system packages (as root): ${missing[*]}" >&2
    fi
  fi
fi

stamp="$VENV/.installed-$(sha256sum < pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  # pip's own output (resolver notes, build-backend notices) goes to a log, shown only when a step fails.
  log="$VENV/setup.log"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  : > "$log"
  step() {  # step DESCRIPTION COMMAND...: run one install step quietly; on failure show the log's end
    echo "setup: $1"
    shift
    if ! "$@" >> "$log" 2>&1; then
      echo "setup: FAILED; the last lines of $log:" >&2
      tail -n 40 "$log" >&2
      exit 1
    fi
  }
  "$VENV/bin/python" -m pip install -q --upgrade pip >> "$log" 2>&1 || true
  # torch first and pinned: an unpinned resolve would pull a multi-GB CUDA build.
  step "installing torch 2.13.0 (CPU) into $VENV" "$VENV/bin/python" -m pip install -q "torch==2.13.0"
  step "installing plugin-bridge (editable) with the gui, test and corpus extras" \
    "$VENV/bin/python" -m pip install -q "torch==2.13.0" -e ".[gui,test,corpus]"
  rm -f "$VENV"/.installed-* && touch "$stamp"
  echo "setup: ready: $("$VENV/bin/python" -c 'import plugin_bridge, sys; print(f"plugin-bridge {plugin_bridge.__version__}, Python {sys.version.split()[0]}")') in $VENV ($VENV/bin/plugin-bridge --help)"
fi
