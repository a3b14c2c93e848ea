//! Checking a report page in headless Chromium, when one is installed: the screenshot is not
//! blank, and no element reaches past the page's right or left edge.

use std::path::Path;
use std::process::Command;

use super::text;

/// The window the page is drawn in.
const WINDOW: &str = "--window-size=1280,2000";

/// Marks the elements that overflow the page (outside a scrolling box), as JSON in a `<pre
/// id="overflow">` that `--dump-dom` prints.
const OVERFLOW_SCRIPT: &str = r#"<script>
window.addEventListener('load', () => {
  const width = document.documentElement.clientWidth;
  const scrolls = (e) => {
    for (let a = e.parentElement; a; a = a.parentElement) {
      if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(a).overflowX)) return true;
    }
    return false;
  };
  const over = [];
  for (const e of document.body.querySelectorAll('*')) {
    const r = e.getBoundingClientRect();
    if ((r.right > width + 0.5 || r.left < -0.5) && !scrolls(e)) {
      over.push(`${e.tagName} right=${r.right} "${(e.textContent || '').slice(0, 60)}"`);
    }
  }
  const out = document.createElement('pre');
  out.id = 'overflow';
  out.textContent = JSON.stringify({ width, over });
  document.body.appendChild(out);
});
</script>
"#;

/// The Chromium binary on PATH, if any.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Headless Chromium with `args` on `page`; its stdout.
fn headless(chromium: &str, args: &[String], page: &Path) -> String {
    let out = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", WINDOW])
        .args(["--virtual-time-budget=5000", "--hide-scrollbars"])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// Renders `page` and checks it; says so and returns when no Chromium is installed.
pub fn check_page(page: &Path) {
    let Some(chromium) = chromium() else {
        eprintln!("no Chromium installed: the page was checked without rendering it");
        return;
    };
    let shot = page.with_file_name("screenshot.png");
    headless(
        chromium,
        &[format!("--screenshot={}", shot.display())],
        page,
    );
    let colours = distinct_colours(&shot);
    assert!(colours > 16, "blank screenshot: {colours} colours");
    std::fs::remove_file(&shot).unwrap();

    let html = std::fs::read_to_string(page).unwrap();
    let checked = page.with_file_name("overflow-check.html");
    let with_script = html.replacen("</body>", &format!("{OVERFLOW_SCRIPT}</body>"), 1);
    std::fs::write(&checked, with_script).unwrap();
    let dom = headless(chromium, &["--dump-dom".to_owned()], &checked);
    std::fs::remove_file(&checked).unwrap();
    let marker = "<pre id=\"overflow\">";
    let start = dom.find(marker).expect("the check ran") + marker.len();
    let end = start + dom[start..].find("</pre>").unwrap();
    let found = dom[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let found: serde_json::Value = serde_json::from_str(&found).unwrap();
    assert_eq!(
        found["over"].as_array().map(Vec::len),
        Some(0),
        "elements overflow the page: {found}"
    );
}

/// The number of distinct colours of a PNG (up to 1000).
fn distinct_colours(png: &Path) -> usize {
    let decoder = ::png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let bytes = info.color_type.samples();
    let mut seen = std::collections::BTreeSet::new();
    for pixel in pixels[..info.buffer_size()].chunks_exact(bytes) {
        seen.insert(pixel.to_vec());
        if seen.len() >= 1000 {
            break;
        }
    }
    seen.len()
}
