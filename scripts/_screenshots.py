"""Screenshots of the check page for the README: a phone-sized Chromium (the system one,
driven by Playwright), the demo store, one answer per language.

Usage: scripts/screenshots [OUT_DIR]   (default docs/)
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.web import browser

SHOTS = (
    ("en", "352099001761481", "web-en.png"),
    ("id", "860123450000012", "web-id.png"),
)


def main() -> None:
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__)
        return
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
    reason = browser.missing()
    if reason:
        sys.exit(f"screenshots: {reason}")
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from ceir.cli import run; run()",
                "serve",
                "--db",
                f"{tmp}/db",
                "--port",
                "0",
                "--web",
                "127.0.0.1:0",
                "--s13",
                "off",
                "--sbi",
                "off",
                "--workers",
                "1",
                "--grace",
                "1",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stderr is not None
            for line in server.stderr:
                found = re.search(r"/metrics on (http://127\.0\.0\.1:\d+)", line)
                if found:
                    base = found.group(1)
                    break
            else:
                sys.exit("screenshots: ceir serve did not start")
            with browser.chromium() as chromium:
                for lang, imei, name in SHOTS:
                    context = chromium.new_context(
                        viewport={"width": 390, "height": 780}, device_scale_factor=2
                    )
                    page = context.new_page()
                    page.goto(f"{base}/?lang={lang}&imei={imei}")
                    page.screenshot(path=str(out / name), full_page=True)
                    context.close()
                    print(f"wrote {out / name}")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
