#!/usr/bin/env bash
# Builds madtrain (installing its packages if needed) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
cd build && ctest --output-on-failure
