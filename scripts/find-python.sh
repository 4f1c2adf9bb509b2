#!/usr/bin/env bash
# Print the path of a Python 3.12 interpreter: python3.12 on the PATH, else the newest pyenv 3.12.x.
set -u
for candidate in python3.12 $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python 2>/dev/null | sort -V -r); do
  if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
    command -v "$candidate"
    exit 0
  fi
done
echo "no Python 3.12 found: install it, or run make PYTHON=/path/to/python3.12" >&2
exit 1
