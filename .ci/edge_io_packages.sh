#!/usr/bin/env bash
# System packages for the edge I/O tests: Debian's GStreamer with its RTSP server library and
# the x264 / OpenH264 encoders, PyGObject for this Python (the `rtsp-server` extra, built against
# the system's GLib) and Chromium (the browser view's screenshot test). Without them those tests
# skip, naming what is missing; so a failed install is reported loudly here and the run goes on.
set -uo pipefail
cd "$(dirname "$0")/.."
packages=(
    gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gir1.2-gstreamer-1.0
    gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0
    libgirepository1.0-dev libcairo2-dev pkg-config chromium
)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null; then
        echo "edge I/O packages: no apt-get here; missing: ${missing[*]}" >&2
    elif ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "${missing[@]}" >/dev/null; }; then
        echo "edge I/O packages: apt-get could not install: ${missing[*]}" >&2
    fi
fi
if ! python -c "import gi" 2>/dev/null; then
    pip install -q -e ".[rtsp-server]" \
        || echo "edge I/O packages: PyGObject (the rtsp-server extra) did not install" >&2
fi
exit 0
