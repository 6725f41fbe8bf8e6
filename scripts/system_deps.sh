#!/usr/bin/env bash
# Installs the system programs docroute needs (tesseract OCR with English, German and French data;
# poppler-utils for pdf2image; with the argument 'test', Chromium for the report test) with apt-get when they are missing and we are root; otherwise says
# what to install and fails.
set -euo pipefail
need=()
command -v tesseract >/dev/null 2>&1 || need+=(tesseract-ocr)
for lang in eng deu fra; do
  if ! tesseract --list-langs 2>/dev/null | grep -qx "$lang"; then need+=("tesseract-ocr-$lang"); fi
done
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
# `system_deps.sh test`: also what the tests use (headless Chromium renders the HTML run report)
if [ "${1:-}" = test ]; then command -v chromium >/dev/null 2>&1 || need+=(chromium); fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "docroute needs these system packages: ${need[*]}" >&2
  echo "install them, e.g.: sudo apt-get install ${need[*]}  (macOS: brew install tesseract tesseract-lang poppler)" >&2
  exit 1
fi
