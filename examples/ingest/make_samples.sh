#!/usr/bin/env bash
# Generates sample media with ffmpeg's lavfi sources into $1 (nothing is downloaded).
set -euo pipefail
out=$1
mkdir -p "$out"
ff() { ffmpeg -nostdin -v error -y "$@"; }
ff -f lavfi -i "testsrc2=size=640x360:rate=25:duration=4" -f lavfi -i "sine=frequency=440:duration=4" \
   -c:v mpeg4 -q:v 4 -c:a aac "$out/pattern.mp4"
ff -f lavfi -i "color=c=black:s=640x360:r=25:d=1" -f lavfi -i "color=c=white:s=640x360:r=25:d=1" \
   -f lavfi -i "testsrc=size=640x360:rate=25:duration=2" -filter_complex "[0][1][2]concat=n=3:v=1:a=0" \
   -c:v mpeg4 -q:v 4 "$out/cuts.mp4"
ff -f lavfi -i "sine=frequency=1000:sample_rate=44100:duration=3" "$out/tone.wav"
ff -f lavfi -i "mandelbrot=size=640x360" -frames:v 1 "$out/still.png"
