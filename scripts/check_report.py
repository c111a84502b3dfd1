"""Open a report in headless Chromium, take a screenshot, and fail if the page logs JavaScript errors or anything
is cut: a table's scroll box or a figure wider than the viewport, or a headline table that does not fit whole.

Usage: python scripts/check_report.py REPORT.html [--screenshot OUT.png] [--width 1200] [--height 3000]
Needs Debian's `chromium` package (apt-get install chromium). Exit 0: rendered without JS errors; 1: errors
(printed); 2: bad input. Chromium runs with no network access of its own (background networking disabled).
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
CONSOLE = re.compile(r":(INFO|WARNING|ERROR):CONSOLE[^\]]*\] \"(.*)\", source: (.*)$")


# Measures the laid-out page and logs one line the checker reads back (the page's own script is untouched).
PROBE = """<script>window.addEventListener('load', function(){
  var w = document.documentElement.clientWidth, bad = [];
  document.querySelectorAll('table, img').forEach(function(el, i){
    var box = el.closest('.scroll') || el, r = box.getBoundingClientRect();
    if (r.right > w + 1) bad.push(el.tagName.toLowerCase() + '#' + i + ' box right ' + Math.round(r.right));
    if (el.classList.contains('headline') && el.scrollWidth > box.clientWidth + 1)
      bad.push('headline table ' + el.scrollWidth + 'px in ' + box.clientWidth + 'px');
  });
  console.log('LONGCTX_LAYOUT ' + (bad.length ? 'CUT ' + bad.join('; ') : 'OK') + ' (viewport ' + w + 'px)');
});</script>"""


def check(report: Path, screenshot: Path, width: int = 1200, height: int = 3000) -> list[str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("check_report: no chromium found; install it with: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        probed = Path(profile) / "probed.html"
        probed.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
        proc = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                               f"--screenshot={screenshot}", probed.as_uri()],
                              capture_output=True, text=True, timeout=120)
    errors, layout = [], None
    for line in proc.stderr.splitlines():
        m = CONSOLE.search(line)
        if m and m.group(2).startswith("LONGCTX_LAYOUT"):
            layout = m.group(2)
        elif m and (m.group(1) == "ERROR" or "Uncaught" in m.group(2) or "Error" in m.group(2)):
            errors.append(f"{m.group(2)} ({m.group(3)})")
    if layout is None:
        errors.append("the layout probe did not report (page did not finish loading?)")
    elif not layout.startswith("LONGCTX_LAYOUT OK"):
        errors.append(layout)
    if not screenshot.exists() or screenshot.stat().st_size == 0:
        errors.append(f"no screenshot written (chromium exit {proc.returncode})")
    return errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report")
    ap.add_argument("--screenshot", default=None)
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=3000)
    args = ap.parse_args()
    report = Path(args.report)
    if not report.is_file():
        print(f"check_report: no such file {report}", file=sys.stderr)
        sys.exit(2)
    shot = Path(args.screenshot) if args.screenshot else report.with_suffix(".png")
    errors = check(report, shot, args.width, args.height)
    for err in errors:
        print(f"check_report: {err}", file=sys.stderr)
    print(f"screenshot: {shot}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
