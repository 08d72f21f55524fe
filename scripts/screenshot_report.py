"""Screenshot an experiment's HTML report in headless Chromium (the README's picture).

    python scripts/screenshot_report.py runs/demo-TIMESTAMP docs/images/demo-report.png
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser import CHROMIUM, chromium_page  # noqa: E402


def main(experiment: str, png: str, height: int = 1600) -> None:
    page_path = Path(experiment) / "report" / "index.html"
    if CHROMIUM is None or not page_path.is_file():
        sys.exit(f"need /usr/bin/chromium and {page_path} (run `mnas report {experiment}` first)")
    with chromium_page(height=height) as page:
        page.goto(page_path.resolve().as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=png, clip={"x": 0, "y": 0, "width": 1100, "height": height})
    print(f"wrote {png}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
